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


def test_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        PollScheduler(max_in_flight=0)
