"""Know, for a job submitted to a Lithops FaaS backend, which calls the platform accepted.

Lithops' FaaS invoker cannot tell us: it invokes on thread pools, retries a refused
invocation (``None``: 429 or a connection error) from a pool of its async invoker loop
that nobody can wait for, and takes whatever else the backend's ``invoke`` returns for an
activation id. Measured against the OpenWhisk-API stand-in (tests/openwhisk_fake):

* its ``openwhisk`` backend returns the HTTP status 401 (bad key) or 404 (action missing)
  in place of an activation id: Lithops logs the calls as invoked, and they never run;
* an exception from ``invoke`` ends in a done-callback that only logs it;
* an invocation retried after a 429 or while the endpoint is down is in flight on a
  pool that ``wait_until_dispatched`` did not wait for.

So the task records every answer of the backend's ``invoke`` (:class:`InvocationAudit`)
and defers only once every call has an activation id, failing with the platform's answer
when an invocation was refused for good.

Lithops' ``aws_lambda`` backend raises ``Exception(f'Error {status}: {text}')`` for a 429
(lithops/serverless/backends/aws_lambda/aws_lambda.py:666-668) where its OpenWhisk-based
backends return ``None``: the audit turns that throttling into ``None`` too, so that
Lithops' invoker requeues the chunk (and a deferring task leaves it to the trigger) instead
of only logging the exception while the calls never run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class InvocationRefused(RuntimeError):
    """The FaaS platform refused some calls for good: they will never run."""


def is_throttling(error: BaseException) -> bool:
    """Lithops' ``aws_lambda`` invoke saying "429" (see the module docstring)."""
    return str(error).startswith("Error 429")


def _job_and_calls(payload: dict[str, Any]) -> tuple[str, list[str] | None]:
    """The job id and call ids an invocation payload carries (``None``: the whole job,
    as a remote-invoker payload does)."""
    if payload.get("remote_invoker"):
        return str(payload["job"]["job_id"]), None
    return str(payload.get("job_id")), list(payload.get("call_ids") or [])


class InvocationAudit:
    """Wraps a Lithops compute handler's ``invoke`` and records what the platform answered.

    A string answer is an activation id: accepted. ``None`` means "try again" to Lithops'
    invoker (429, connection error), which requeues the calls: not recorded. Anything else
    (an HTTP status where an activation id belongs, an exception) is a refusal: those
    calls will never run.

    :param compute_handler: the executor's ``compute_handler`` (Lithops ``ServerlessHandler``).
    """

    def __init__(self, compute_handler: Any) -> None:
        self._invoke: Callable[[dict[str, Any]], Any] = compute_handler.invoke
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.accepted: dict[str, set[str]] = {}
        self.whole_jobs: set[str] = set()
        self.refused: list[str] = []
        self.throttled = 0
        compute_handler.invoke = self  # an instance attribute shadows the method

    def __call__(self, payload: dict[str, Any]) -> Any:
        job_id, calls = _job_and_calls(payload)
        where = f"{job_id}/{','.join(calls)}" if calls else f"{job_id} (remote invoker)"
        try:
            answer = self._invoke(payload)
        except Exception as err:
            if is_throttling(err):
                with self._lock:
                    self.throttled += 1
                return None  # Lithops' invoker requeues the chunk, as on a backend that says None
            self._refuse(f"{where}: {type(err).__name__}: {err}")
            raise
        if answer is None:
            return None
        if isinstance(answer, str) and answer:
            with self._changed:
                if calls is None:
                    self.whole_jobs.add(job_id)
                else:
                    self.accepted.setdefault(job_id, set()).update(calls)
                self._changed.notify_all()
        else:
            self._refuse(f"{where}: the platform answered {answer!r} instead of an activation id")
        return answer

    def _refuse(self, what: str) -> None:
        with self._changed:
            self.refused.append(what)
            self._changed.notify_all()

    def missing(self, total_calls: dict[str, int]) -> dict[str, int]:
        """How many calls of each job have no activation id yet."""
        with self._lock:
            return {
                job_id: total - len(self.accepted.get(job_id, ()))
                for job_id, total in total_calls.items()
                if job_id not in self.whole_jobs and len(self.accepted.get(job_id, ())) < total
            }

    def wait_all_accepted(
        self, total_calls: dict[str, int], *, timeout: float, on_wait: Callable[[], None] | None = None
    ) -> None:
        """Block until every call of ``total_calls`` (job id -> count) has an activation id.

        :raises InvocationRefused: as soon as the platform refused an invocation for good.
        :raises TimeoutError: when calls are still waiting after ``timeout`` seconds.
        :param on_wait: called about once a second while waiting (to log progress).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                if self.refused:
                    raise InvocationRefused(
                        f"the FaaS platform refused {len(self.refused)} invocation(s); those calls will "
                        "never run: " + "; ".join(self.refused[:5])
                    )
            missing = self.missing(total_calls)
            if not missing:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    "calls still had no activation id after "
                    f"{timeout:.0f}s: " + ", ".join(f"{j}: {n}" for j, n in sorted(missing.items()))
                )
            if on_wait is not None:
                on_wait()
            with self._changed:
                self._changed.wait(min(left, 1.0))


def make_ibm_cf_redeploy_lock_reentrant() -> None:
    """Let Lithops' ``ibm_cf`` backend redeploy a missing action instead of deadlocking.

    On a 404 from an invocation, Lithops 3.8's ``IBMCloudFunctionsBackend.invoke`` takes
    the module's ``cf_mutex`` and calls ``deploy_runtime``, whose ``_refresh_ow_client``
    takes the same (non-reentrant) lock again: the invoking thread blocks forever and the
    calls are never invoked (measured against the OpenWhisk-API stand-in). Every use of
    the lock acquires and releases it in one thread, so a reentrant lock keeps its mutual
    exclusion and lets the redeploy run as Lithops intends. Idempotent.
    """
    import lithops.serverless.backends.ibm_cf.ibm_cf as ibm_cf

    if not isinstance(ibm_cf.cf_mutex, type(threading.RLock())):
        ibm_cf.cf_mutex = threading.RLock()
