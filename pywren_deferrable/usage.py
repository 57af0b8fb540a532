"""The one line a task logs when its job's results are in: what the job used and cost.

``Job 1a2b3c-0: 100 calls, 41.8s wall, 380.2 call-seconds, 95.1 GB-s, ~0.0016 USD (AWS
Lambda list price (2026-12-01))``. It comes from the statuses the worker reads anyway to
fetch the results (no extra request), and goes to the log only: the task's XCom is
unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pywren_deferrable.call_status import CallStatus
from pywren_deferrable.pricing import Price, gb_seconds


@dataclass(frozen=True)
class Usage:
    """What a job's calls used.

    :param calls: calls whose status was read (those that returned futures included).
    :param wall: submission to the last call's end, in seconds (``None`` when no call
        reported its times).
    :param call_seconds: the calls' durations summed, as their workers timed them.
    :param gb_seconds: memory x duration summed (``None`` without a memory size).
    :param cost: the estimate, in ``price.currency`` (``None`` without a price).
    """

    calls: int
    wall: float | None
    call_seconds: float
    gb_seconds: float | None
    cost: float | None
    price: Price | None


def usage_of(
    statuses: Iterable[CallStatus],
    *,
    submitted_at: float | None,
    memory_mb: float | None,
    price: Price | None,
) -> Usage:
    """The usage of a job whose calls left ``statuses``."""
    calls = 0
    durations: list[float] = []
    last_end: float | None = None
    for status in statuses:
        calls += 1
        if status.worker_start is not None and status.worker_end is not None:
            durations.append(max(0.0, status.worker_end - status.worker_start))
            last_end = max(last_end or status.worker_end, status.worker_end)
    wall = last_end - submitted_at if last_end is not None and submitted_at else None
    gbs = gb_seconds(durations, memory_mb) if memory_mb else None
    cost = price.cost(gbs, calls) if price is not None and gbs is not None else None
    return Usage(calls, wall, sum(durations), gbs, cost, price)


def usage_line(name: str, usage: Usage) -> str:
    """``usage`` as the one line the task logs for the job called ``name``."""
    parts = [f"{usage.calls} calls"]
    if usage.wall is not None:
        parts.append(f"{usage.wall:.1f}s wall")
    parts.append(f"{usage.call_seconds:.1f} call-seconds")
    if usage.gb_seconds is not None:
        parts.append(f"{usage.gb_seconds:.1f} GB-s")
    if usage.cost is not None and usage.price is not None:
        parts.append(f"~{usage.cost:.4g} {usage.price.currency} ({usage.price.source})")
    return f"Job {name}: " + ", ".join(parts)
