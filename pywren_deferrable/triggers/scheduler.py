"""One poll scheduler per event loop: polls in flight are bounded, idle polls spread out.

A triggerer runs every trigger on one event loop. When it starts (or restarts with
thousands of deferred tasks) every trigger polls at once; left alone, thousands of
requests then wait in the connection pool while their parsing competes for the loop,
and the triggers that start together keep polling together. The scheduler bounds the
polls in flight per storage endpoint (a slow or unreachable endpoint holds only the
slots of its own triggers), and idle triggers pause a random 90-100 % of their
``poll_interval``, so that their phases drift apart and the polls of a steady triggerer
arrive evenly (the pause never exceeds ``poll_interval``, as documented).

The first poll of the process also freezes the garbage collector's view of the heap
(``gc.freeze``, as Airflow's DAG processor does): a triggerer has loaded Airflow and the
client libraries by then, millions of long-lived objects that every full collection
would otherwise walk while the loop waits (measured: full collections of 0.5-2.5 s with
5,000 triggers, benchmarks/ row "scale"). Collections then walk only what was allocated
since; nothing is lost but cyclic garbage that existed at that instant.
"""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

from pywren_deferrable.job import StorageLocation

# Enough to keep a remote endpoint's round trips overlapped at 500 polls/s (a poll is
# one LIST of a few ms), few enough that a burst queues here rather than in the loop.
DEFAULT_MAX_POLLS_IN_FLIGHT = 64
IDLE_JITTER = 0.1


def endpoint_key(location: StorageLocation) -> Hashable:
    """What shares a slot pool: one storage service (not one bucket)."""
    return (location.kind, location.endpoint, location.region, location.root)


class PollScheduler:
    """Hands each event loop its own slot pools (asyncio primitives belong to one loop)."""

    def __init__(
        self,
        max_in_flight: int = DEFAULT_MAX_POLLS_IN_FLIGHT,
        rnd: random.Random | None = None,
        freeze_heap: bool = True,
    ):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self._freeze_heap = freeze_heap
        self._random = rnd or random.Random()
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    def _semaphore(self, key: Hashable) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        pools = self._pools.get(loop)
        if pools is None:
            pools = self._pools[loop] = {}
            if self._freeze_heap:  # once per process (see the module docstring)
                self._freeze_heap = False
                gc.freeze()
        semaphore = pools.get(key)
        if semaphore is None:
            semaphore = pools[key] = asyncio.Semaphore(self.max_in_flight)
        return semaphore

    @asynccontextmanager
    async def slot(self, location: StorageLocation) -> AsyncIterator[None]:
        """Hold one of the endpoint's poll slots for the duration of a poll."""
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


SCHEDULER = PollScheduler()
