"""Worker side: submit through Lithops, but leave the calls beyond ``max_workers`` to the trigger.

Lithops' ``FaaSInvoker._invoke_job`` invokes the first ``max_workers`` chunks of a job on
a thread pool and hands the rest to ``_queue_call_ranges``, which puts them in
``pending_calls_q`` for two async invoker threads (``_start_async_invokers``) to invoke as
the local job monitor hands out tokens. For one submission, :class:`PendingCapture`
replaces, on that invoker instance only:

* ``_queue_call_ranges``: the ranges are recorded, not queued;
* ``_start_async_invokers``: no invoker thread starts, and none of the tokens it would put
  in the bucket (one per thread) exists, so nothing beyond ``max_workers`` is invoked;
* ``_invoke_task``: a first-wave invocation that raises is recorded (Lithops only logs it,
  and its calls would never run) so that the submit fails with its error.

Then it waits for the first wave to be accepted, takes back any first-wave chunk the
backend throttled (Lithops re-queues those in ``pending_calls_q``), and builds each pending
chunk's payload by running Lithops' own ``_invoke_task`` against a recorder instead of the
backend: the payload is exactly the one Lithops would send. These are private hooks of
Lithops (pinned < 3.9); ``tests/unit/test_dispatch_capture.py`` fails loudly if their
shape changes.
"""

from __future__ import annotations

import copy
import logging
import queue
from dataclasses import dataclass, field
from typing import Any

from pywren_deferrable.dispatch.backends import DISPATCH_BACKENDS, REFUSALS, TARGETS
from pywren_deferrable.dispatch.plan import Chunk, DispatchPlan, find_secrets, strip_secrets

log = logging.getLogger(__name__)

__all__ = ["DISPATCH_BACKENDS", "PendingCapture", "store_plans", "why_not_capture"]

# Payload keys _invoke_task sets per chunk; the plan stores them per chunk, not in the template.
PER_CHUNK_KEYS = frozenset({"call_ids", "host_submit_tstamp"})


def why_not_capture(fexec: Any) -> str | None:
    """Why calls beyond ``max_workers`` of ``fexec`` cannot be left to the trigger, or
    ``None`` when they can."""
    from lithops.invokers import FaaSInvoker

    invoker = fexec.invoker
    if not isinstance(invoker, FaaSInvoker):
        return None if invoker is None else "not a FaaS backend: Lithops submits the whole job at once"
    if invoker.remote_invoker:
        return "remote_invoker is on: one function invokes every call"
    if invoker.backend not in DISPATCH_BACKENDS:
        return (
            f"the trigger cannot invoke {invoker.backend!r} functions yet (only {sorted(DISPATCH_BACKENDS)})"
        )
    refusal = REFUSALS.get(invoker.backend)
    return refusal(invoker.config) if refusal is not None else None


class _Recorder:
    """Stands in for the compute handler while Lithops builds the pending payloads."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def invoke(self, payload: dict[str, Any]) -> str:
        self.payloads.append(payload)
        return "left-to-the-trigger"


@dataclass
class _JobCapture:
    job: Any
    pending: list[range] = field(default_factory=list)


class PendingCapture:
    """Records what Lithops would have queued for later invocation (see the module docstring).

    Use: ``capture = PendingCapture(fexec)``, submit, then ``capture.finish(config)``.
    """

    def __init__(self, fexec: Any) -> None:
        self.fexec = fexec
        self.invoker = fexec.invoker
        self.jobs: dict[str, _JobCapture] = {}
        self.errors: list[tuple[str, BaseException]] = []
        self._invoke_task = self.invoker._invoke_task
        self.invoker._queue_call_ranges = self._record
        self.invoker._start_async_invokers = self._no_async_invokers
        self.invoker._invoke_task = self._guarded_invoke

    def _job(self, job: Any) -> _JobCapture:
        return self.jobs.setdefault(job.job_id, _JobCapture(job))

    def _record(self, job: Any, call_ids: range) -> None:
        size = job.chunksize
        captured = self._job(job)
        for start in range(0, len(call_ids), size):
            captured.pending.append(call_ids[start : start + size])

    def _no_async_invokers(self) -> None:
        log.debug("calls beyond max_workers are left to the trigger: no async invoker started")

    def _guarded_invoke(self, job: Any, call_ids_range: range) -> None:
        self._job(job)
        try:
            self._invoke_task(job, call_ids_range)
        except Exception as err:  # Lithops would only log it; its calls would never run
            self.errors.append((f"{job.job_id} calls {call_ids_range[0]}-{call_ids_range[-1]}", err))

    def wait_first_wave(self) -> None:
        """Block until every first-wave invocation was answered; throttled ones become pending."""
        self.invoker.executor.shutdown(wait=True)
        requeued: dict[str, list[range]] = {}
        while True:
            try:
                job, call_ids_range = self.invoker.pending_calls_q.get(block=False)
            except queue.Empty:
                break
            if job is not None:
                requeued.setdefault(job.job_id, []).append(call_ids_range)
        for job_id, ranges in requeued.items():
            captured = self.jobs[job_id]
            captured.pending = sorted(ranges, key=lambda r: r[0]) + captured.pending

    def build_plans(self, connection_config: dict[str, Any]) -> dict[str, DispatchPlan]:
        """The plan of every job that has pending chunks, secrets removed."""
        plans: dict[str, DispatchPlan] = {}
        for job_id, captured in self.jobs.items():
            if captured.pending:
                plans[job_id] = self._plan(captured, connection_config)
        return plans

    def _plan(self, captured: _JobCapture, connection_config: dict[str, Any]) -> DispatchPlan:
        invoker, job = self.invoker, captured.job
        recorder = _Recorder()
        handler = invoker.compute_handler
        invoker.compute_handler = recorder
        try:
            for call_ids_range in captured.pending:
                self._invoke_task(job, call_ids_range)
        finally:
            invoker.compute_handler = handler
        template = invoker._create_payload(job)
        config = template["config"]
        refs = find_secrets(config, connection_config)
        template["config"] = strip_secrets(config, refs)
        chunks = []
        drop: set[str] = set()
        for payload in recorder.payloads:
            drop |= {k for k in template if k not in payload}
            fields = {
                k: v
                for k, v in payload.items()
                if k not in PER_CHUNK_KEYS and (k not in template or template[k] != v) and k != "config"
            }
            if payload["config"] is not config and payload["config"] != config:
                raise RuntimeError("Lithops changed its config between two payloads of one job")
            chunks.append(Chunk(tuple(payload["call_ids"]), copy.deepcopy(fields)))
        for key in PER_CHUNK_KEYS | drop:
            template.pop(key, None)
        pending_starts = {r[0] for r in captured.pending}
        size = job.chunksize
        direct = tuple(
            tuple(f"{i:05d}" for i in range(start, min(start + size, job.total_calls)))
            for start in range(0, job.total_calls, size)
            if start not in pending_starts
        )
        sample = recorder.payloads[0]
        return DispatchPlan(
            backend=invoker.backend,
            target=TARGETS[invoker.backend](handler.backend, invoker.backend, sample, config),
            max_workers=int(invoker.max_workers),
            chunksize=int(size),
            direct=direct,
            pending=tuple(chunks),
            payload=template,
            drop=tuple(sorted(drop)),
            secrets=tuple(refs),
        )


def store_plans(fexec: Any, plans: dict[str, DispatchPlan]) -> None:
    """Write each plan under its job's prefix, through Lithops' own storage client."""
    from pywren_deferrable.job import dispatch_plan_key

    storage = fexec.internal_storage
    for job_id, plan in plans.items():
        storage.storage.put_object(
            storage.bucket, dispatch_plan_key(fexec.executor_id, job_id), plan.to_json()
        )
