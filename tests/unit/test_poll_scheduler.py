"""The per-loop poll scheduler: polls in flight bounded per endpoint, idle pauses spread."""

from __future__ import annotations

import asyncio
import random

import pytest

from pywren_deferrable.job import StorageLocation
from pywren_deferrable.triggers.scheduler import PollScheduler

A = StorageLocation(kind="s3", bucket="one", backend="minio", endpoint="http://a:9000")
A_OTHER_BUCKET = StorageLocation(kind="s3", bucket="two", backend="minio", endpoint="http://a:9000")
B = StorageLocation(kind="s3", bucket="one", backend="minio", endpoint="http://b:9000")


async def test_polls_in_flight_are_bounded_per_endpoint() -> None:
    scheduler = PollScheduler(max_in_flight=3)
    peak = {"a": 0, "b": 0}
    release = asyncio.Event()

    async def poll(location: StorageLocation, name: str) -> None:
        async with scheduler.slot(location):
            peak[name] = max(peak[name], scheduler.in_flight(location))
            await release.wait()

    tasks = [asyncio.create_task(poll(A if i % 2 else A_OTHER_BUCKET, "a")) for i in range(10)]
    tasks += [asyncio.create_task(poll(B, "b")) for _ in range(2)]
    await asyncio.sleep(0.05)
    # Buckets of one endpoint share its slots; another endpoint is not held up by them.
    assert scheduler.in_flight(A) == 3 and scheduler.in_flight(B) == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == {"a": 3, "b": 2}
    assert scheduler.in_flight(A) == 0


def test_each_event_loop_has_its_own_slots() -> None:
    scheduler = PollScheduler(max_in_flight=1)

    async def once() -> int:
        async with scheduler.slot(A):
            return scheduler.in_flight(A)

    assert asyncio.run(once()) == 1
    assert asyncio.run(once()) == 1  # a new loop: not bound to the first loop's semaphore


def test_idle_pauses_spread_and_never_exceed_poll_interval() -> None:
    scheduler = PollScheduler(rnd=random.Random(1))
    pauses = [scheduler.pause(10.0, 10.0) for _ in range(1000)]
    assert all(9.0 <= p <= 10.0 for p in pauses)
    assert max(pauses) - min(pauses) > 0.9  # spread over the 10 % band
    assert scheduler.pause(0.75, 10.0) == 0.75  # polls while calls finish keep their pace


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        PollScheduler(max_in_flight=0)
    with pytest.raises(ValueError, match="starts_per_iteration"):
        PollScheduler(starts_per_iteration=0)


async def _iterations(counter: list[int], stop: asyncio.Event) -> None:
    """Counts event-loop iterations: a callback that re-schedules itself runs once per iteration."""
    loop = asyncio.get_running_loop()

    def tick() -> None:
        counter[0] += 1
        if not stop.is_set():
            loop.call_soon(tick)

    loop.call_soon(tick)


async def test_a_burst_of_polls_starts_a_few_per_loop_iteration_in_arrival_order() -> None:
    scheduler = PollScheduler(starts_per_iteration=3)
    iteration, stop = [0], asyncio.Event()
    await _iterations(iteration, stop)
    started: list[tuple[int, int]] = []

    async def poll(n: int) -> None:
        async with scheduler.slot(A):
            started.append((n, iteration[0]))

    await asyncio.gather(*(poll(n) for n in range(20)))
    stop.set()
    assert [n for n, _ in started] == list(range(20))
    per_iteration = [sum(1 for _, i in started if i == it) for it in {i for _, i in started}]
    assert max(per_iteration) == 3 and len(per_iteration) >= 7


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    scheduler = PollScheduler(starts_per_iteration=1)
    first = asyncio.ensure_future(scheduler.turn())
    cancelled = asyncio.ensure_future(scheduler.turn())
    last = asyncio.ensure_future(scheduler.turn())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait_for(asyncio.gather(first, last), timeout=5)
    assert cancelled.cancelled()
