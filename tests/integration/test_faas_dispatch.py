"""No worker slot held at any job size on a FaaS backend (pywren_deferrable.dispatch).

On the OpenWhisk-API stand-in (tests/openwhisk_fake: every activation a process running
Lithops' real action entry point and worker) and on the AWS Lambda stand-in
(tests/lambda_fake: every invocation a process running Lithops' real Lambda handler),
storage on the local S3 endpoint. A job of
several times ``max_workers`` calls: the task defers right after the first wave, the
trigger invokes the rest as calls finish, never more than ``max_workers`` at once by the
calls' own start/end times in their status.json, every call runs, the results are right;
a trigger killed mid-dispatch (kill -9 of its process) and a new one finish the job with
no call lost; no secret in the plan or the trigger kwargs; a task retry reattaches.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from faas_checks import max_overlap
from lambda_fake.platform import lambda_account
from openwhisk_fake import FakeOpenWhisk
from payloads.functions import sleep_then

from pywren_deferrable import PyWrenMapOperator
from pywren_deferrable.dispatch.plan import Cursor, DispatchPlan
from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY, LocalS3Server
from pywren_deferrable.job import JobRef
from pywren_deferrable.triggers.job import PyWrenJobTrigger

pytestmark = pytest.mark.integration

MAX_WORKERS = 3


class Platform:
    """The stand-in and the secrets the ``lithops_default`` Connection gives it.

    :param fake: the OpenWhisk or the Lambda stand-in (both list invocations by job).
    :param secrets: the compute credentials that must appear nowhere but the Connection.
    """

    def __init__(self, fake: Any, secrets: list[str], s3: LocalS3Server, bucket: str) -> None:
        self.fake, self.secrets, self.s3, self.bucket = fake, secrets, s3, bucket

    @property
    def sentinels(self) -> list[str]:
        return [*self.secrets, EMBEDDED_SECRET_KEY, EMBEDDED_ACCESS_KEY]

    def calls_invoked(self, job_id: str = "M000") -> list[str]:
        return [c for a in self.fake.invocations_of(job_id) for c in a.call_ids]

    def get(self, key: str) -> bytes:
        return bytes(self.s3.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def statuses(self, job: JobRef, job_id: str = "M000") -> list[dict[str, Any]]:
        return [
            json.loads(self.get(job.status_key(job_id, f"{i:05d}"))) for i in range(job.total_calls[job_id])
        ]


@pytest.fixture(params=["openwhisk", "ibm_cf", "aws_lambda"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def platform(
    monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server, bucket: str, tmp_path: Path, backend: str
) -> Iterator[Platform]:
    if backend == "aws_lambda":
        with lambda_account(tmp_path, monkeypatch, max_workers=MAX_WORKERS, runtime_timeout=120) as account:
            account.extra["minio"] = {"endpoint": s3_server.endpoint, "storage_bucket": bucket}
            conn = {
                "conn_type": "lithops",
                "login": EMBEDDED_ACCESS_KEY,
                "password": EMBEDDED_SECRET_KEY,
                "extra": account.extra,
            }
            monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(conn))
            yield Platform(account.fake, account.sentinels, s3_server, bucket)
        return
    import lithops.constants
    import lithops.serverless.backends.ibm_cf.ibm_cf as ibm_cf
    import lithops.storage.storage as storage
    import lithops.util.ibm_token_manager as token_manager

    cache = tmp_path / "lithops-cache"  # no runtime metadata or token from another test
    cache.mkdir()
    for module in (lithops.constants, ibm_cf, storage, token_manager):
        monkeypatch.setattr(module, "CACHE_DIR", str(cache))
    monkeypatch.setattr(token_manager.IAMTokenManager, "TOKEN_FILE", str(cache / "ibm_iam" / "token"))
    namespace = f"ns-{uuid.uuid4().hex[:10]}"
    section: dict[str, Any] = {"namespace": namespace, "max_workers": MAX_WORKERS, "runtime_timeout": 120}
    extra: dict[str, Any] = {"lithops": {"backend": backend, "storage": "minio"}, backend: section}
    if backend == "openwhisk":
        api_key = f"{uuid.uuid4()}:{uuid.uuid4().hex}"
        fake = FakeOpenWhisk(api_keys={api_key: namespace}, workdir=str(tmp_path))
        section["api_key"] = api_key
    else:
        api_key = f"iam{uuid.uuid4().hex}"
        fake = FakeOpenWhisk(iam_api_keys={api_key}, workdir=str(tmp_path))
    fake.start()
    section["endpoint"] = fake.endpoint
    if backend == "ibm_cf":
        # Lithops' token manager asks IAM at the SDK's default URL; the trigger at the
        # Connection's iam_endpoint (the project's key, as for IBM COS).
        from ibm_cloud_sdk_core.token_managers.iam_request_based_token_manager import (
            IAMRequestBasedTokenManager,
        )

        monkeypatch.setattr(IAMRequestBasedTokenManager, "DEFAULT_IAM_URL", fake.iam_endpoint)
        extra["ibm"] = {
            "iam_api_key": api_key,
            "resource_group_id": "test-resource-group",
            "iam_endpoint": fake.iam_endpoint,
        }
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_bundle)
    extra["minio"] = {"endpoint": s3_server.endpoint, "storage_bucket": bucket}
    conn = {
        "conn_type": "lithops",
        "login": EMBEDDED_ACCESS_KEY,
        "password": EMBEDDED_SECRET_KEY,
        "extra": extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(conn))
    # The secret part of an OpenWhisk key (its uuid part names the package), an IBM Cloud
    # API key (its first 4 characters name the package).
    secret = api_key.split(":", 1)[1] if ":" in api_key else api_key[4:]
    try:
        yield Platform(fake, [secret], s3_server, bucket)
    finally:
        fake.stop()


class FakeTI:
    """What the operators read of a task instance."""

    def __init__(self, run_id: str | None = None, try_number: int = 1) -> None:
        self.dag_id, self.task_id, self.map_index, self.try_number = "faas_dispatch", "t", -1, try_number
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"


def defer(op: PyWrenMapOperator, ti: FakeTI) -> tuple[PyWrenJobTrigger, float, float]:
    """Run ``op`` until it defers; return its trigger and when execute() started and ended."""
    started = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    trigger = deferred.value.trigger
    assert isinstance(trigger, PyWrenJobTrigger)
    return trigger, started, time.time()


def sleepy_map(calls: int, seconds: float) -> PyWrenMapOperator:
    return PyWrenMapOperator(
        task_id="t",
        map_function=sleep_then,
        map_iterdata=[(i, seconds) for i in range(calls)],
        job_timeout=400,
        poll_interval=1,
    )


async def test_the_trigger_dispatches_beyond_max_workers(platform: Platform) -> None:
    calls = 3 * MAX_WORKERS
    op = sleepy_map(calls, 2.0)
    trigger, _, deferred_at = defer(op, FakeTI())
    job = trigger.job

    # The task deferred right after the first wave: only max_workers calls were invoked.
    assert job.dispatch == ("M000",)
    assert sorted(platform.calls_invoked()) == [f"{i:05d}" for i in range(MAX_WORKERS)]
    plan_raw = platform.get(job.dispatch_plan_key("M000"))
    plan = DispatchPlan.from_json(plan_raw)
    assert plan.max_workers == MAX_WORKERS and len(plan.pending) == calls - MAX_WORKERS
    # No secret in the plan, nor in the trigger kwargs.
    kwargs = json.dumps(trigger.serialize()[1])
    for sentinel in platform.sentinels:
        assert sentinel not in plan_raw.decode()
        assert sentinel not in kwargs

    event = await trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert op.execute_complete({"ti": FakeTI()}, dict(event.payload)) == list(range(calls))

    # Every call invoked exactly once, each in an activation of its own.
    assert sorted(platform.calls_invoked()) == [f"{i:05d}" for i in range(calls)]
    statuses = platform.statuses(job)
    # Plain Lithops' status.json keeps each call's own start and end.
    assert all({"worker_start_tstamp", "worker_end_tstamp"} <= set(s) for s in statuses)
    intervals = [(s["worker_start_tstamp"], s["worker_end_tstamp"]) for s in statuses]
    assert max_overlap(intervals) <= MAX_WORKERS
    # The task was gone before the calls beyond the first wave started.
    later = [start for start, _ in intervals[MAX_WORKERS:]]
    assert deferred_at < min(later)
    assert Cursor.from_json(platform.get(job.dispatch_cursor_key("M000"))).dispatched == len(plan.pending)


TRIGGER_SCRIPT = """
import asyncio, json, sys
from pywren_deferrable.triggers.job import PyWrenJobTrigger
kwargs = json.loads(sys.stdin.read())
event = asyncio.run(PyWrenJobTrigger(**kwargs).wait_for_event())
print(json.dumps(event.payload["status"]))
"""


@pytest.mark.parametrize("backend", ["openwhisk", "aws_lambda"])
async def test_a_trigger_killed_mid_dispatch_loses_no_call(platform: Platform) -> None:
    calls = 4 * MAX_WORKERS
    op = sleepy_map(calls, 2.0)
    ti = FakeTI()
    trigger, _, _ = defer(op, ti)
    job = trigger.job
    kwargs = trigger.serialize()[1]

    # The first triggerer: a process of its own, killed -9 once it has dispatched some.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    process = subprocess.Popen(
        [sys.executable, "-c", TRIGGER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(kwargs))
    process.stdin.close()
    deadline = time.monotonic() + 240
    while len(platform.calls_invoked()) <= MAX_WORKERS + 1 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    invoked_by_first = len(platform.calls_invoked())
    assert MAX_WORKERS < invoked_by_first < calls

    # A retry of the task (same task instance, next try) reattaches to the job with its plan
    # instead of submitting it again, and its trigger finishes the dispatch.
    retry_op = sleepy_map(calls, 2.0)
    retry_trigger, _, _ = defer(retry_op, FakeTI(ti.run_id, try_number=2))
    assert retry_trigger.job == job
    event = await retry_trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert retry_op.execute_complete({"ti": FakeTI()}, dict(event.payload)) == list(range(calls))

    invoked = platform.calls_invoked()
    assert sorted(set(invoked)) == [f"{i:05d}" for i in range(calls)]  # none lost
    # At-least-once with bounded duplicates: at most one batch (max_workers chunks).
    assert len(invoked) - calls <= MAX_WORKERS
    assert len({a.params["executor_id"] for a in platform.fake.invocations_of("M000")}) == 1


@pytest.mark.parametrize("backend", ["openwhisk"])
async def test_remote_invocation_keeps_lithops_remote_invoker(platform: Platform) -> None:
    """``remote_invocation=True``: one function invokes every call, as Lithops defines it;
    nothing is left to the trigger."""
    calls = 2 * MAX_WORKERS
    op = PyWrenMapOperator(
        task_id="t",
        map_function=sleep_then,
        map_iterdata=[(i, 1.0) for i in range(calls)],
        remote_invocation=True,
        job_timeout=400,
        poll_interval=1,
    )
    trigger, _, _ = defer(op, FakeTI())
    assert trigger.job.dispatch == ()
    event = await trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert op.execute_complete({"ti": FakeTI()}, dict(event.payload)) == list(range(calls))
    invokers = [a for a in platform.fake.activations.values() if a.params.get("remote_invoker")]
    assert len(invokers) == 1
    assert sorted(platform.calls_invoked()) == [f"{i:05d}" for i in range(calls)]
