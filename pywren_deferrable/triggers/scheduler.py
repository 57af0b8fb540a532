"""One poll scheduler per event loop: polls in flight are bounded, idle polls spread out.

A triggerer runs every trigger on one event loop. When it starts (or restarts with
thousands of deferred tasks) every trigger polls at once; left alone, thousands of
requests then wait in the connection pool while their parsing competes for the loop,
and the triggers that start together keep polling together. The scheduler bounds the
polls in flight per storage endpoint (a slow or unreachable endpoint holds only the
slots of its own triggers), and idle triggers pause a random 90-100 % of their
``poll_interval``, so that their phases drift apart and the polls of a steady triggerer
arrive evenly (the pause never exceeds ``poll_interval``, as documented).

A busy loop is also paced: at most a few polls (or trigger start-ups) begin per event-loop
iteration. asyncio runs, in one iteration, every callback that became ready during the
previous one; when thousands of triggers arrive together (a triggerer restart), the polls
whose timers expired while one long iteration ran all run in the next, which is as long:
the loop stays in iterations of close to a second until the burst is over (measured: blocks
of 0.6-3.2 s for 10 s with 5,000 triggers arriving). Pacing keeps each iteration to the
polls in flight plus a few new ones; the others start in the following iterations.

Before each poll the scheduler also lets the process' :class:`HeapFreezer` keep the
long-lived triggers out of the garbage collector's full collections
(:mod:`pywren_deferrable.triggers.heap`). Freezing acts on the whole process, other
providers' triggers included, so the Airflow configuration can turn it off
(:func:`heap_freezer_from_config`).
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from pywren_deferrable.job import StorageLocation
from pywren_deferrable.triggers.heap import THAW_EVERY, HeapFreezer

# The provider's section of the Airflow configuration (declared in get_provider_info).
CONFIG_SECTION = "pywren_deferrable"

# New polls per loop iteration: at ~1.5 ms of CPU each, an iteration stays far under the
# triggerer's 0.2 s warning, and an idle loop (iterations of microseconds) still starts
# thousands per second.
STARTS_PER_ITERATION = 8
# Enough to keep a remote endpoint's round trips overlapped at 500 polls/s (a poll is
# one LIST of a few ms), few enough that a burst queues here rather than in the loop.
DEFAULT_MAX_POLLS_IN_FLIGHT = 64
IDLE_JITTER = 0.1


def endpoint_key(location: StorageLocation) -> Hashable:
    """What shares a slot pool: one storage service (not one bucket)."""
    return (location.kind, location.endpoint, location.region, location.root)


class _Pacer:
    """Lets at most ``per_iteration`` waiters go per event-loop iteration, first come first."""

    def __init__(self, per_iteration: int):
        self.per_iteration = per_iteration
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._release, loop)
        await waiter

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        released = 0
        while self._waiting and released < self.per_iteration:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a cancelled waiter gives its turn away
                waiter.set_result(None)
                released += 1
        if self._waiting:
            loop.call_soon(self._release, loop)  # runs in the next iteration
        else:
            self._scheduled = False


@dataclass
class _LoopState:
    """What the scheduler keeps for one event loop: its pacer and its endpoints' slots."""

    pacer: _Pacer
    slots: dict[Hashable, asyncio.Semaphore] = field(default_factory=dict)


class PollScheduler:
    """Hands each event loop its own slot pools (asyncio primitives belong to one loop)."""

    def __init__(
        self,
        max_in_flight: int = DEFAULT_MAX_POLLS_IN_FLIGHT,
        rnd: random.Random | None = None,
        heap: HeapFreezer | None = None,
        starts_per_iteration: int = STARTS_PER_ITERATION,
    ):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        if starts_per_iteration < 1:
            raise ValueError(f"starts_per_iteration must be >= 1, got {starts_per_iteration!r}")
        self.max_in_flight = max_in_flight
        self.heap = heap
        self._random = rnd or random.Random()
        self.starts_per_iteration = starts_per_iteration
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState(_Pacer(self.starts_per_iteration))
        return state

    def _semaphore(self, key: Hashable) -> asyncio.Semaphore:
        slots = self._state().slots
        semaphore = slots.get(key)
        if semaphore is None:
            semaphore = slots[key] = asyncio.Semaphore(self.max_in_flight)
        return semaphore

    async def turn(self) -> None:
        """Wait for this loop's pacer to let one more poll or start-up begin."""
        await self._state().pacer.turn()

    @asynccontextmanager
    async def slot(self, location: StorageLocation) -> AsyncIterator[None]:
        """Hold one of the endpoint's poll slots for the duration of a poll."""
        if self.heap is not None:
            self.heap.tend()
        await self.turn()
        async with self._semaphore(endpoint_key(location)):
            yield

    def in_flight(self, location: StorageLocation) -> int:
        """Polls holding a slot of ``location``'s endpoint on this loop (for tests)."""
        return self.max_in_flight - self._semaphore(endpoint_key(location))._value

    def pause(self, interval: float, poll_interval: float) -> float:
        """The pause before the next poll: an idle trigger's (at ``poll_interval``) is
        shortened by up to 10 %, at random, so that triggers started together drift apart."""
        if interval >= poll_interval:
            return interval * (1.0 - IDLE_JITTER * self._random.random())
        return interval


def heap_freezer_from_config() -> HeapFreezer | None:
    """The heap freezer the Airflow configuration asks for: ``[pywren_deferrable]
    heap_freezer`` (default on; off leaves CPython's collections as they are, for a
    triggerer shared with other providers' triggers that would rather not wait for the
    thaw to free their cyclic garbage) and ``heap_thaw_interval`` (seconds, default 1800).
    Read once, when the triggerer imports the trigger; a bad value fails naming it."""
    try:
        if not conf.getboolean(CONFIG_SECTION, "heap_freezer", fallback=True):
            return None
        thaw_every = conf.getfloat(CONFIG_SECTION, "heap_thaw_interval", fallback=THAW_EVERY)
    except Exception as err:  # AirflowConfigException, with the key and the value
        raise AirflowException(f"[{CONFIG_SECTION}] configuration: {err}") from err
    if not thaw_every > 0:
        raise AirflowException(
            f"[{CONFIG_SECTION}] heap_thaw_interval must be a number of seconds > 0, got {thaw_every!r}"
        )
    return HeapFreezer(thaw_every=thaw_every)


# The process' scheduler: the triggerer's (its one event loop) and a worker's.
SCHEDULER = PollScheduler(heap=heap_freezer_from_config())
