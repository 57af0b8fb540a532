"""Lithops' ``aws_lambda`` backend end to end on the AWS Lambda stand-in (tests/lambda_fake:
moto's control plane, each invocation a process running Lithops' real
``entry_point.lambda_handler``), storage on the local S3 endpoint.

Lithops' real runtime deployment (its layer found, the function created from its handler
zip, the synchronous metadata invoke), its FaaS invoker (the hand-built, SigV4-signed Event
invoke) and its worker all run; the calls beyond ``max_workers`` are invoked by the trigger
(pywren_deferrable.dispatch.aws_lambda) through aiobotocore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from faas_checks import max_overlap
from lambda_fake.platform import LambdaAccount, lambda_account, set_connection
from payloads.functions import add, sleep_then

from pywren_deferrable import PyWrenMapOperator
from pywren_deferrable.dispatch.plan import Cursor, DispatchPlan
from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY, LocalS3Server, run_dag_test
from pywren_deferrable.job import dispatch_cursor_key, dispatch_plan_key, status_key

pytestmark = pytest.mark.integration

FAAS_DAGS = str(Path(__file__).with_name("faas_dags"))
MAX_WORKERS = 3


class Aws:
    def __init__(
        self, account: LambdaAccount, s3: LocalS3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
    ):
        self.account, self.fake, self.s3, self.bucket = account, account.fake, s3, bucket
        self.monkeypatch = monkeypatch
        account.extra["minio"] = {"endpoint": s3.endpoint, "storage_bucket": bucket}
        self.set_connection()

    def set_connection(self, **aws: Any) -> None:
        extra = json.loads(json.dumps(self.account.extra))
        extra["aws"].update(aws)
        set_connection(self.monkeypatch, extra, EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY)

    def get(self, key: str) -> bytes | None:
        client = self.s3.client()
        try:
            return bytes(client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except client.exceptions.NoSuchKey:
            return None


@pytest.fixture
def aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server, bucket: str
) -> Iterator[Aws]:
    with lambda_account(tmp_path, monkeypatch, max_workers=MAX_WORKERS, runtime_timeout=60) as account:
        yield Aws(account, s3_server, bucket, monkeypatch)


def run(op: Any) -> Any:
    class TI:
        dag_id, task_id, map_index, try_number, run_id = "aws", "t", -1, 1, "run-aws"

        def xcom_pull(self, task_ids: str) -> Any:
            raise KeyError(task_ids)

    TI.run_id = f"run-{id(op)}"
    return op.execute({"ti": TI()})


def test_map_and_map_reduce_defer_after_the_first_wave(
    aws: Aws, airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "faas-dags", "classpath": local, "kwargs": {"path": FAAS_DAGS}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))

    state, results = run_dag_test(FAAS_DAGS, "lambda_dispatch")

    assert state == "success", results
    calls = 3 * MAX_WORKERS
    assert results["map"] == list(range(calls))
    assert results["map_reduce"] == sum(range(calls))
    fake = aws.fake
    fake.wait_idle()
    # Lithops deployed its runtime through the API: one function, found its layer (no
    # layer builder), read the runtime's metadata with a synchronous invoke.
    assert len(fake.function_names()) == 1
    metadata = [i for i in fake.invocations.values() if "get_metadata" in i.event]
    assert len(metadata) == 1 and "preinstalls" in metadata[0].result
    assert all(i.status == "success" for i in fake.invocations.values()), [
        i.logs[-2000:] for i in fake.invocations.values() if i.status != "success"
    ]
    executors = sorted({i.event["executor_id"] for i in fake.invocations_of("M000")})
    assert len(executors) == 2
    for executor_id in executors:
        invoked = [
            c
            for i in fake.invocations.values()
            if i.event.get("executor_id") == executor_id
            for c in i.call_ids
        ]
        jobs = sorted(
            {
                i.event["job_id"]
                for i in fake.invocations.values()
                if i.event.get("executor_id") == executor_id
            }
        )
        # Every call invoked exactly once.
        expected = [f"M000/{i:05d}" for i in range(calls)] + (["R000/00000"] if "R000" in jobs else [])
        by_job = [
            f"{i.event['job_id']}/{c}"
            for i in fake.invocations.values()
            if i.event.get("executor_id") == executor_id
            for c in i.call_ids
        ]
        assert sorted(by_job) == expected and len(invoked) == len(expected)
        # The task left the calls beyond max_workers to its trigger: a plan with the rest,
        # and the trigger's cursor over all of it.
        raw = aws.get(dispatch_plan_key(executor_id, "M000"))
        assert raw is not None, "the task did not leave calls to the trigger"
        plan = DispatchPlan.from_json(raw)
        assert plan.backend == "aws_lambda" and plan.max_workers == MAX_WORKERS
        assert len(plan.direct) + len(plan.pending) == calls and len(plan.direct) <= MAX_WORKERS
        cursor = aws.get(dispatch_cursor_key(executor_id, "M000"))
        assert Cursor.from_json(cursor).dispatched == len(plan.pending)
        for sentinel in aws.account.sentinels:
            assert sentinel not in raw.decode()
        # Never more than max_workers calls running, by their own start/end (reducer included).
        spans = []
        for job_call in expected:
            job_id, call = job_call.split("/")
            status = json.loads(aws.get(status_key(executor_id, job_id, call)) or b"{}")
            spans.append((status["worker_start_tstamp"], status["worker_end_tstamp"]))
        assert max_overlap(spans) <= MAX_WORKERS, spans


def test_a_wrong_secret_key_fails_clearly_naming_no_secret(aws: Aws) -> None:
    wrong = "wrong" + aws.account.secret_key[5:]
    aws.set_connection(secret_access_key=wrong)
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2], deferrable=False)
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|InvalidSignature") as failure:
        run(op)
    assert wrong not in str(failure.value) and aws.account.secret_key not in str(failure.value)
    assert aws.fake.invocations == {}


def test_an_unknown_access_key_fails_clearly(aws: Aws) -> None:
    aws.set_connection(access_key_id="AKIAUNKNOWN000000000")
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2], deferrable=False)
    with pytest.raises(Exception, match=r"InvalidClientTokenId|UnrecognizedClient"):
        run(op)
    assert aws.fake.invocations == {}


def test_a_function_deleted_behind_lithops_back_fails_clearly(aws: Aws) -> None:
    """The runtime is deployed (its metadata cached), then its function deleted: Lithops'
    aws_lambda backend does not redeploy on 404 (it raises "not deployed"); the task fails
    naming it instead of losing the calls."""
    assert run(PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2], deferrable=False)) == [
        1,
        2,
    ]
    (name,) = aws.fake.function_names()
    aws.fake.delete_function(name)
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[3, 4], deferrable=False)
    with pytest.raises(Exception, match=r"not deployed") as failure:
        run(op)
    assert "M000" in str(failure.value)


def test_an_invocation_killed_at_the_function_timeout(aws: Aws) -> None:
    """The function's Timeout, lowered by an admin after deployment (as ``aws lambda
    update-function-configuration --timeout`` does), is shorter than the call: Lambda kills
    the invocation, which writes no status. The task fails naming the call, not a hang."""
    assert run(PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1], deferrable=False)) == [1]
    (name,) = aws.fake.function_names()
    boto3.client(
        "lambda",
        region_name=aws.fake.region,
        aws_access_key_id=aws.account.access_key,
        aws_secret_access_key=aws.account.secret_key,
    ).update_function_configuration(FunctionName=name, Timeout=6)
    op = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(7, 60)], timeout=8, deferrable=False
    )
    with pytest.raises(AirflowException, match=r"(?s)M000/00000.*wrote no status"):
        run(op)
    killed = [
        i
        for i in aws.fake.invocations_of("M000")
        if i.event["executor_id"] != aws.fake.invocations_of("M000")[0].event["executor_id"]
    ]
    assert len(killed) == 1 and killed[0].status == "timeout"
    assert "Task timed out after 6.00 seconds" in killed[0].result["errorMessage"]


async def test_throttling_of_the_first_wave_is_left_to_the_trigger(aws: Aws) -> None:
    """Above the account's concurrency Lambda answers 429. Lithops' aws_lambda invoke raises
    on it (its OpenWhisk backends say "try again"); the task treats it as Lithops' try-again,
    so the throttled chunk of the first wave joins the ones the trigger invokes, which retries
    it: every call runs once, none is lost."""
    assert run(PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1], deferrable=False)) == [1]
    aws.fake.concurrency_limit = MAX_WORKERS - 1
    op = PyWrenMapOperator(
        task_id="t",
        map_function=sleep_then,
        map_iterdata=[(i, 3) for i in range(MAX_WORKERS)],
        poll_interval=1,
    )
    with pytest.raises(TaskDeferred) as deferred:
        run(op)
    assert aws.fake.throttled > 0
    job = deferred.value.trigger.job  # type: ignore[attr-defined]
    assert job.dispatch == ("M000",)
    event = await deferred.value.trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert op.execute_complete({"ti": None}, dict(event.payload)) == list(range(MAX_WORKERS))
    calls = [
        c
        for i in aws.fake.invocations_of("M000")
        if i.event["executor_id"] == job.executor_id
        for c in i.call_ids
    ]
    assert sorted(calls) == [f"{i:05d}" for i in range(MAX_WORKERS)]


async def test_the_endpoint_down_for_20s_while_the_trigger_dispatches(
    aws: Aws, caplog: pytest.LogCaptureFixture
) -> None:
    """The Lambda endpoint goes down once the first wave runs, for 20 s: the trigger's
    invokes fail to connect, are retried with backoff at later polls, and the job completes
    once it is back, every call once, at most max_workers at once."""
    calls = 2 * MAX_WORKERS
    op = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(i, 1) for i in range(calls)], poll_interval=1
    )
    with pytest.raises(TaskDeferred) as deferred:
        run(op)
    trigger = deferred.value.trigger
    assert trigger.job.dispatch == ("M000",)  # type: ignore[attr-defined]
    outage = 20.0
    aws.fake.down_for(outage)
    back_at = time.time() + outage
    event = await trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert op.execute_complete({"ti": None}, dict(event.payload)) == list(range(calls))
    invocations = aws.fake.invocations_of("M000")
    assert sorted(c for i in invocations for c in i.call_ids) == [f"{i:05d}" for i in range(calls)]
    # The calls beyond the first wave were invoked after the endpoint came back.
    later = [i.start for i in invocations if int(i.call_ids[0]) >= MAX_WORKERS]
    assert min(later) >= back_at - 0.5
    # ... after the trigger had tried while it was down.
    retries = [r.getMessage() for r in caplog.records if "could not dispatch calls" in r.getMessage()]
    assert retries and "attempts" in retries[0], retries
