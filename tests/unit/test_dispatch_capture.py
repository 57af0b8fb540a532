"""The private Lithops hooks :mod:`pywren_deferrable.dispatch.capture` relies on.

Lithops is pinned below 3.9, but a patch release could still move these. If one of these
tests fails, the capture would silently stop capturing (calls queued in a process that
exits, or invoked beyond max_workers): fix the capture before relaxing the test.
"""

from __future__ import annotations

import inspect

from lithops.invokers import FaaSInvoker


def params(name: str) -> list[str]:
    return list(inspect.signature(getattr(FaaSInvoker, name)).parameters)


def source(name: str) -> str:
    return inspect.getsource(getattr(FaaSInvoker, name))


def test_the_hooks_keep_their_signatures():
    assert params("_queue_call_ranges") == ["self", "job", "call_ids"]
    assert params("_start_async_invokers") == ["self"]
    assert params("_invoke_task") == ["self", "job", "call_ids_range"]
    assert params("_create_payload") == ["self", "job"]


def test_invoke_job_queues_and_starts_invokers_through_the_hooks():
    body = source("_invoke_job")
    # Looked up on the instance, so that an instance attribute replaces them.
    assert "self._queue_call_ranges(job, queued)" in body
    assert "self._queue_call_ranges(job, range(job.total_calls))" in body
    assert "self._start_async_invokers()" in body
    assert "self._invoke_direct(job, direct)" in body
    assert "self._invoke_task" in source("_invoke_direct")
    assert "self.executor.submit" in source("_invoke_direct")


def test_invoke_task_builds_the_payload_the_plan_copies():
    body = source("_invoke_task")
    assert "payload = self._create_payload(job)" in body
    assert "payload['call_ids'] = call_ids" in body
    assert "_timed_invoke(" in body and "self.compute_handler" in body
    # A throttled first-wave chunk goes back to pending_calls_q: the capture takes it back.
    assert "self.pending_calls_q.put((job, call_ids_range))" in body
    # The only token source besides the monitor is _start_async_invokers.
    assert "token_bucket_q.put" in source("_start_async_invokers")
