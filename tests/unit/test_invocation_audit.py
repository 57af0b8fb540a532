"""InvocationAudit: what a FaaS backend's ``invoke`` answered decides when the task may defer.

The answers are the ones Lithops' OpenWhisk client gives (``lithops/libs/openwhisk/client.py``):
an activation id, ``None`` on 429 or a connection error (Lithops retries), or the HTTP
status 401/404 in place of an id. The end-to-end checks are in
tests/integration/test_openwhisk.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pywren_deferrable.dispatch.audit import InvocationAudit, InvocationRefused


class Handler:
    """A compute handler whose ``invoke`` answers from a script, per call id."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.payloads: list[dict[str, Any]] = []

    def invoke(self, payload: dict[str, Any]) -> Any:
        self.payloads.append(payload)
        answer = self.answers[payload["call_ids"][0]]
        if isinstance(answer, Exception):
            raise answer
        return answer


def payload(job_id: str, *calls: str) -> dict[str, Any]:
    return {"job_id": job_id, "call_ids": list(calls), "config": {"secret": "x"}}


def test_accepted_calls_release_the_wait() -> None:
    handler = Handler({"00000": "act-1", "00001": "act-2"})
    audit = InvocationAudit(handler)
    assert handler.invoke(payload("M000", "00000")) == "act-1"  # the wrapper answers as before
    assert audit.missing({"M000": 2}) == {"M000": 1}
    handler.invoke(payload("M000", "00001"))
    audit.wait_all_accepted({"M000": 2}, timeout=1)
    assert len(handler.payloads) == 2


def test_a_retry_answer_is_not_a_refusal_and_the_wait_sees_the_later_acceptance() -> None:
    handler = Handler({"00000": None})
    audit = InvocationAudit(handler)
    assert handler.invoke(payload("M000", "00000")) is None  # 429: Lithops requeues it
    assert audit.refused == []

    def accept_later() -> None:
        time.sleep(0.3)
        handler.answers["00000"] = "act-1"
        handler.invoke(payload("M000", "00000"))

    threading.Thread(target=accept_later).start()
    audit.wait_all_accepted({"M000": 1}, timeout=10)


@pytest.mark.parametrize("answer", [401, 404, ""])
def test_a_status_in_place_of_an_activation_id_is_a_refusal(answer: Any) -> None:
    handler = Handler({"00000": "act-1", "00001": answer})
    audit = InvocationAudit(handler)
    handler.invoke(payload("M000", "00000"))
    assert handler.invoke(payload("M000", "00001")) == answer
    with pytest.raises(InvocationRefused, match=rf"M000/00001: the platform answered {answer!r}"):
        audit.wait_all_accepted({"M000": 2}, timeout=5)


def test_an_exception_is_a_refusal_and_still_raised() -> None:
    handler = Handler({"00000": RuntimeError("internal error")})
    audit = InvocationAudit(handler)
    with pytest.raises(RuntimeError):
        handler.invoke(payload("R000", "00000"))
    with pytest.raises(InvocationRefused, match="R000/00000: RuntimeError: internal error"):
        audit.wait_all_accepted({"R000": 1}, timeout=5)


def test_lithops_aws_lambda_429_exception_is_a_retry_not_a_refusal() -> None:
    """Lithops' aws_lambda invoke raises ``Exception('Error 429: ...')`` where its OpenWhisk
    client returns None: the audit answers None (Lithops requeues the chunk); other errors
    of that backend stay refusals."""
    throttled = Exception('Error 429: {"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}')
    handler = Handler({"00000": throttled, "00001": Exception("Error 500: internal")})
    audit = InvocationAudit(handler)
    assert handler.invoke(payload("M000", "00000")) is None
    assert audit.throttled == 1 and audit.refused == []
    with pytest.raises(Exception, match="Error 500"):
        handler.invoke(payload("M000", "00001"))
    assert len(audit.refused) == 1


def test_the_wait_times_out_naming_the_jobs_left() -> None:
    audit = InvocationAudit(Handler({}))
    with pytest.raises(TimeoutError, match="M000: 3"):
        audit.wait_all_accepted({"M000": 3}, timeout=0.2)


def test_a_remote_invoker_payload_dispatches_the_whole_job() -> None:
    class Remote:
        def invoke(self, payload: dict[str, Any]) -> Any:
            return "act-remote"

    handler = Remote()
    audit = InvocationAudit(handler)
    handler.invoke({"remote_invoker": True, "job": {"job_id": "M000", "total_calls": 500}})
    audit.wait_all_accepted({"M000": 500}, timeout=1)
