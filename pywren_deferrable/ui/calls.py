"""One job's calls as the tab shows them: pure functions over parsed status objects.

A finished call's ``status.json`` (Lithops 3.8) carries ``worker_start_tstamp`` and
``worker_end_tstamp`` (when the worker took the call and when it wrote the status),
``worker_cold_start`` (the container/process was new), ``activation_id`` (the
backend's id of the invocation) and ``worker_peak_memory_end`` (bytes); failures and
their remote tracebacks are read by :func:`~pywren_deferrable.call_status.parse_call_status`,
the same parser the trigger and the worker use, so the tab never disagrees with the task.
A call that has only written its ``<activation>.init`` is running since that object's time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

from pywren_deferrable.call_status import StatusParseError, parse_call_status
from pywren_deferrable.job import ENGINE_LITHOPS

DONE = "done"
FAILED = "failed"
RUNNING = "running"
PENDING = "pending"
# The table's order: what an operator on call needs first.
STATE_ORDER = {FAILED: 0, RUNNING: 1, DONE: 2, PENDING: 3}
# A traceback kept for the page; a longer one is cut (the task log has it whole).
MAX_TRACEBACK_CHARS = 16 * 1024


@dataclass(frozen=True)
class CallRecord:
    """What the tab knows about one call.

    :param job_id: the call's job (``M000``).
    :param call_id: the call id (``00042``).
    :param state: ``done``, ``failed``, ``running`` or ``pending``.
    :param start: when the worker started it (epoch seconds), if known.
    :param end: when it ended (epoch seconds), if it has.
    :param cold: the worker was cold (a new container or process), if known.
    :param activation: the backend's activation / invocation id, if known.
    :param peak_memory: the worker's peak memory in bytes, if reported.
    :param error: one line naming the remote exception, for failed calls.
    :param traceback: the remote traceback, for failed calls that logged one.
    """

    job_id: str
    call_id: str
    state: str
    start: float | None = None
    end: float | None = None
    cold: bool | None = None
    activation: str | None = None
    peak_memory: float | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, for finished calls with both times."""
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)

    @property
    def key(self) -> str:
        """``M000/00042``: how logs and errors name the call."""
        return f"{self.job_id}/{self.call_id}"


def _number(data: dict[str, object], name: str) -> float | None:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def finished_record(raw: bytes, job_id: str, call: str, engine: str = ENGINE_LITHOPS) -> CallRecord:
    """The record of a call from its ``status.json`` bytes.

    :raises StatusParseError: when the object is not a status the engine writes.
    """
    status = parse_call_status(raw, call, engine)
    try:
        data = json.loads(raw)
    except ValueError as err:  # parse_call_status accepted it: cannot happen
        raise StatusParseError(f"status of call {call} is not JSON") from err
    # pywren-ibm-cloud names its times start_time/end_time.
    start = _number(data, "worker_start_tstamp") or _number(data, "start_time")
    end = _number(data, "worker_end_tstamp") or _number(data, "end_time")
    cold = data.get("worker_cold_start")
    activation = data.get("activation_id")
    traceback = status.traceback
    if traceback and len(traceback) > MAX_TRACEBACK_CHARS:
        traceback = traceback[:MAX_TRACEBACK_CHARS] + "\n... (cut; the task log has the whole traceback)"
    return CallRecord(
        job_id=job_id,
        call_id=call,
        state=FAILED if status.failed else DONE,
        start=start,
        end=end,
        cold=cold if isinstance(cold, bool) else None,
        activation=str(activation)[:64] if isinstance(activation, str | int) else None,
        peak_memory=_number(data, "worker_peak_memory_end"),
        error=status.error,
        traceback=traceback,
    )


def broken_record(job_id: str, call: str, reason: str) -> CallRecord:
    """A call whose status object exists but cannot be read: shown as failed, with why."""
    return CallRecord(job_id=job_id, call_id=call, state=FAILED, error=reason[:300])


def running_record(job_id: str, call: str, activation: str | None, since: float | None) -> CallRecord:
    """A call that has started (its ``.init`` exists) and not ended."""
    return CallRecord(job_id=job_id, call_id=call, state=RUNNING, start=since, activation=activation)


@dataclass(frozen=True)
class Counts:
    """How many calls are in each state."""

    total: int
    done: int
    failed: int
    running: int

    @property
    def pending(self) -> int:
        return max(0, self.total - self.done - self.failed - self.running)

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total


def count(records: Iterable[CallRecord], total: int) -> Counts:
    """Count ``records`` by state; calls without a record are pending."""
    done = failed = running = 0
    for record in records:
        if record.state == DONE:
            done += 1
        elif record.state == FAILED:
            failed += 1
        elif record.state == RUNNING:
            running += 1
    return Counts(total=total, done=done, failed=failed, running=running)


def table_order(records: Iterable[CallRecord]) -> list[CallRecord]:
    """Failed calls first, then running, then done, each in job and call order."""
    return sorted(records, key=lambda r: (STATE_ORDER.get(r.state, 9), r.job_id, r.call_id))


@dataclass(frozen=True)
class Histogram:
    """Call durations in equal-width bins from ``low`` to ``high`` seconds."""

    low: float
    high: float
    counts: list[int]

    @property
    def width(self) -> float:
        return (self.high - self.low) / len(self.counts) if self.counts else 0.0


def duration_histogram(durations: list[float], bins: int = 20) -> Histogram | None:
    """The histogram of ``durations``, or ``None`` when there are none."""
    if not durations:
        return None
    low, high = min(durations), max(durations)
    if high - low < 1e-9:
        return Histogram(low, low + 1e-3, [len(durations)] + [0] * (bins - 1))
    counts = [0] * bins
    width = (high - low) / bins
    for value in durations:
        counts[min(bins - 1, int((value - low) / width))] += 1
    return Histogram(low, high, counts)
