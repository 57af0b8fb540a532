"""What the trigger tells the task log while a job runs, and when.

One line per job of the JobRef, ``job M000: 370/1000 done, 40 running, 0 failed, ETA
2m10s``, logged at every change of a job's state (pending, running, failed count,
complete) and otherwise at most every ``min_interval`` seconds while counts move: a
100,000-call job finishing calls every half second must not write a line per poll.
The ETA is the remaining calls over the rate observed since this trigger first saw the
job (a restarted trigger starts measuring again: it keeps nothing outside storage).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pywren_deferrable.triggers.poll import JobProgress, PollResult

DEFAULT_PROGRESS_INTERVAL = 30.0


def format_duration(seconds: float) -> str:
    """``2m10s``, ``1h05m``, ``45s``: short enough for a progress line."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def job_phase(progress: JobProgress) -> tuple[str, int]:
    """The state whose changes are always logged: phase and failed count."""
    if progress.complete:
        phase = "complete"
    elif progress.started or progress.done:
        phase = "running"
    else:
        phase = "pending"
    return phase, len(progress.failed)


@dataclass
class ProgressLog:
    """Builds the progress line of each poll, or ``None`` when it is not worth a line.

    :param min_interval: the shortest pause, in seconds, between two lines that only
        report moving counts (state changes are logged at once).
    """

    min_interval: float = DEFAULT_PROGRESS_INTERVAL
    _first_seen: dict[str, tuple[float, int]] = field(default_factory=dict)
    _phases: tuple[tuple[str, int], ...] | None = None
    _counts: tuple[int, ...] = ()
    _logged_at: float | None = None

    def eta(self, progress: JobProgress, now: float) -> float | None:
        """Seconds until ``progress`` completes at the rate seen so far, if any was seen."""
        started_at, done_then = self._first_seen.setdefault(progress.name, (now, len(progress.done)))
        finished = len(progress.done) - done_then
        if progress.complete or finished <= 0 or now <= started_at:
            return None
        return (progress.total - len(progress.done)) * (now - started_at) / finished

    def line(self, progress: JobProgress, now: float) -> str:
        eta = self.eta(progress, now)
        return progress.summary() + (f", ETA {format_duration(eta)}" if eta is not None else "")

    def update(self, result: PollResult, now: float) -> str | None:
        """The line to log after the poll that gave ``result`` at ``now`` (monotonic seconds)."""
        lines = [self.line(progress, now) for progress in result.jobs]
        phases = tuple(job_phase(progress) for progress in result.jobs)
        counts = tuple(n for p in result.jobs for n in (len(p.done), len(p.started)))
        changed_state = phases != self._phases
        moved = counts != self._counts
        self._phases, self._counts = phases, counts
        due = self._logged_at is None or now - self._logged_at >= self.min_interval
        if changed_state or (moved and due):
            self._logged_at = now
            return "; ".join(lines)
        return None
