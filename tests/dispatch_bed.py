"""A job with a dispatch plan stored in localhost storage, for the dispatcher's tests on
each backend's stand-in: the backend's test file says how its Connection, payload config
and invoke target look; the plan, the clock and the poll results are the same for all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pywren_deferrable.dispatch.dispatcher import Dispatcher
from pywren_deferrable.dispatch.plan import Chunk, Cursor, DispatchPlan, find_secrets, strip_secrets
from pywren_deferrable.job import JobRef, StorageLocation
from pywren_deferrable.triggers.poll import JobProgress, PollResult
from pywren_deferrable.triggers.status import LocalStatusSource


class DispatchBed:
    """Job ``a1b2c3-0`` (one map job ``M000`` of ``direct + pending`` calls, one per chunk)."""

    backend = ""

    def __init__(self, root: Path, *, max_workers: int, direct: int, pending: int) -> None:
        self.max_workers, self.direct, self.total = max_workers, direct, direct + pending
        self.job = JobRef(
            "a1b2c3-0",
            ("M000",),
            {"M000": self.total},
            StorageLocation(kind="localhost", bucket="bkt", backend="localhost", root=str(root)),
            "map",
            "3.8.0",
            dispatch=("M000",),
        )
        self.source = LocalStatusSource(str(root), "bkt")
        self.now = 0.0

    def connection_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def payload_config(self) -> dict[str, Any]:
        """The config Lithops puts in each payload (the Connection's, with the storage's)."""
        return {**self.connection_config(), "localhost": {"storage_bucket": "bkt"}}

    def target(self) -> dict[str, Any]:
        raise NotImplementedError

    async def store_plan(self) -> DispatchPlan:
        config = self.payload_config()
        refs = find_secrets(config, self.connection_config())
        plan = DispatchPlan(
            backend=self.backend,
            target=self.target(),
            max_workers=self.max_workers,
            chunksize=1,
            direct=tuple((f"{i:05d}",) for i in range(self.direct)),
            pending=tuple(
                Chunk((f"{i:05d}",), {"data_byte_strs": [str(i)]}) for i in range(self.direct, self.total)
            ),
            payload={"config": strip_secrets(config, refs), "job_id": "M000", "executor_id": "a1b2c3-0"},
            secrets=tuple(refs),
        )
        await self.source.put(self.job.dispatch_plan_key("M000"), plan.to_json())
        return plan

    def dispatcher_with(
        self, get_config: Callable[[], Awaitable[dict[str, Any]]], max_outage: float = 60.0
    ) -> Dispatcher:
        return Dispatcher(self.job, get_config, max_outage=max_outage, clock=lambda: self.now)

    async def cursor(self) -> int:
        return Cursor.from_json(await self.source.get(self.job.dispatch_cursor_key("M000"))).dispatched

    def poll_result(self, done: set[str], started: set[str] = frozenset()) -> PollResult:  # type: ignore[assignment]
        """What a poll of the job reports when ``done`` (and ``started``) calls are known."""
        progress = JobProgress(job_id="M000", total=self.total)
        progress.started.update(started)
        for call in done:
            progress.finished(call)
        progress.advance_watermark()
        return PollResult(jobs=(progress,), new_done=len(done))


def ids(*indexes: int) -> set[str]:
    return {f"{i:05d}" for i in indexes}
