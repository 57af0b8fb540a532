"""Failures, retries, cancellation, secrets and XCom size, with real Lithops jobs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from payloads.functions import add, big_result, fail_on, sleep_then

from pywren_deferrable import PyWrenMapOperator
from pywren_deferrable.config import build_config, s3_credentials
from pywren_deferrable.embedded import LocalS3Server, embedded_connection, embedded_pywren_connection
from pywren_deferrable.job import JobRef, key_layout
from pywren_deferrable.triggers.job import PyWrenJobTrigger
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.triggers.status import open_status_source

pytestmark = pytest.mark.integration


class FakeTI:
    def __init__(self, try_number: int = 1, run_id: str = "run-1") -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number = (
            "dag",
            run_id,
            "t",
            -1,
            try_number,
        )

    def xcom_pull(self, task_ids: str) -> Any:
        raise KeyError(task_ids)


def jobs_prefix(engine: str) -> str:
    return key_layout(engine).jobs_prefix + "/"


def keys(s3: LocalS3Server, bucket: str, prefix: str = "") -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def defer(op: PyWrenMapOperator, ti: FakeTI) -> dict[str, Any]:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    return deferred.value.trigger.serialize()[1]


async def event_of(trigger_kwargs: dict[str, Any]) -> dict[str, Any]:
    return dict((await PyWrenJobTrigger(**trigger_kwargs).wait_for_event()).payload)


@pytest.mark.engines
def test_one_failing_call_among_100(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, engine: str
) -> None:
    op = PyWrenMapOperator(
        task_id="t",
        map_function=fail_on,
        map_iterdata=list(range(100)),
        extra_params={"bad": 37},
        deferrable=False,
    )
    with pytest.raises(AirflowException) as failure:
        op.execute({"ti": FakeTI()})
    message = str(failure.value)
    assert "M000/00037" in message
    assert "Traceback (most recent call last)" in message
    assert "ValueError: boom on 37" in message
    # Kept for debugging (clean_data=False): the failed call's status is still there.
    assert any(k.endswith("/00037/status.json") for k in keys(s3_server, bucket, jobs_prefix(engine)))


@pytest.mark.engines
def test_failed_job_is_cleaned_with_clean_data(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, engine: str
) -> None:
    op = PyWrenMapOperator(
        task_id="t",
        map_function=fail_on,
        map_iterdata=[1, 3],
        clean_data=True,
        fail_fast=False,
        deferrable=False,
    )
    with pytest.raises(AirflowException, match="ValueError: boom on 3"):
        op.execute({"ti": FakeTI()})
    assert keys(s3_server, bucket, jobs_prefix(engine)) == set()


@pytest.mark.engines
async def test_retry_reattaches_instead_of_resubmitting(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, capfd: pytest.CaptureFixture[str], engine: str
) -> None:
    first = defer(PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2, 3]), FakeTI(1))
    # The first try's worker dies here; the job finishes without it.
    assert (await event_of(first))["status"] == "success"
    jobs_before = {k.split("/")[1] for k in keys(s3_server, bucket, jobs_prefix(engine))}
    retry_op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2, 3])
    retry = defer(retry_op, FakeTI(2))
    assert retry["job"]["executor_id"] == first["job"]["executor_id"]
    assert "Reattaching to job" in capfd.readouterr().out
    assert {
        k.split("/")[1] for k in keys(s3_server, bucket, jobs_prefix(engine))
    } == jobs_before  # nothing new
    event = await event_of(retry)
    assert retry_op.execute_complete({"ti": FakeTI(2)}, event) == [1, 2, 3]
    # Success forgets the job: a deliberate re-run submits afresh.
    assert keys(s3_server, bucket, "pywren-deferrable/") == set()
    rerun = defer(PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2, 3]), FakeTI(3))
    assert rerun["job"]["executor_id"] != first["job"]["executor_id"]


async def test_retry_after_a_failed_job_resubmits_only_its_failed_calls(lithops_conn: str) -> None:
    def operator() -> PyWrenMapOperator:
        return PyWrenMapOperator(task_id="t", map_function=fail_on, map_iterdata=[1, 3], fail_fast=False)

    first = defer(operator(), FakeTI(1, "run-f"))
    assert (await event_of(first))["status"] == "failed"
    # The retry waits for the earlier job (here: ended), then resubmits its failed call alone.
    retry = defer(operator(), FakeTI(2, "run-f"))
    assert retry["job"]["executor_id"] == first["job"]["executor_id"]
    with pytest.raises(TaskDeferred) as resubmitted:
        operator().execute_complete({"ti": FakeTI(2, "run-f")}, await event_of(retry))
    again = resubmitted.value.trigger.serialize()[1]["job"]
    assert again["executor_id"] != first["job"]["executor_id"] and again["total_calls"] == {"M000": 1}
    with pytest.raises(AirflowException, match=r"input #1 = 3 failed 2 tries"):
        operator().execute_complete(
            {"ti": FakeTI(2, "run-f")}, await event_of(resubmitted.value.trigger.serialize()[1])
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.engines
async def test_on_kill_stops_the_local_job_and_cleans(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, engine: str
) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(1, 30), (2, 30)], clean_data=True
    )
    kwargs = defer(op, FakeTI(1, "run-kill"))
    job = JobRef.from_dict(kwargs["job"])
    assert job.runner_pid and _alive(job.runner_pid)
    conn = json.loads(os.environ["AIRFLOW_CONN_LITHOPS_DEFAULT"])
    config = build_config(conn["extra"], login=conn["login"], password=conn["password"])
    async with open_status_source(job.storage, s3_credentials(config)) as source:
        for _ in range(100):  # wait until the calls run
            if (await JobPoller(job).poll(source)).jobs[0].started:
                break
            time.sleep(0.2)
    await PyWrenJobTrigger(**kwargs).on_kill()
    for _ in range(50):
        if not _alive(job.runner_pid):
            break
        time.sleep(0.2)
    assert not _alive(job.runner_pid)
    assert keys(s3_server, bucket, f"{jobs_prefix(engine)}{job.executor_id}") == set()
    time.sleep(3)  # a call still running would write its status.json now
    assert keys(s3_server, bucket, f"{jobs_prefix(engine)}{job.executor_id}") == set()


@pytest.mark.engines
async def test_no_secret_in_kwargs_events_xcom_or_logs(
    monkeypatch: pytest.MonkeyPatch,
    s3_server: LocalS3Server,
    bucket: str,
    capfd: pytest.CaptureFixture[str],
    engine: str,
) -> None:
    access, secret = "SENTINEL-ACCESS-7f3a", "SENTINEL-SECRET-9c1e"
    connection = embedded_pywren_connection if engine == "pywren" else embedded_connection
    conn = connection(s3_server.endpoint, bucket)
    conn["login"], conn["password"] = access, secret  # moto accepts any keys
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(conn))
    op = PyWrenMapOperator(task_id="t", map_function=fail_on, map_iterdata=[1, 2])
    kwargs = defer(op, FakeTI(1, "run-secrets"))
    event = await event_of(kwargs)
    xcom = op.execute_complete({"ti": FakeTI(1, "run-secrets")}, event)
    failing = PyWrenMapOperator(task_id="t", map_function=fail_on, map_iterdata=[3])
    failed_event = await event_of(defer(failing, FakeTI(1, "run-secrets-2")))
    with pytest.raises(AirflowException) as failure:
        failing.execute_complete({"ti": FakeTI(1, "run-secrets-2")}, failed_event)
    job = JobRef.from_dict(kwargs["job"])
    places = {
        "trigger kwargs": json.dumps(kwargs),
        "success event": json.dumps(event),
        "failed event": json.dumps(failed_event),
        "xcom": json.dumps(xcom),
        "error": str(failure.value),
        "task and trigger logs": "".join(capfd.readouterr()),
        "runner log": Path(job.runner_log or "").read_text(),
    }
    assert xcom == [1, 2]
    for place, text in places.items():
        assert access not in text and secret not in text, place


def test_results_over_max_xcom_bytes_are_returned_by_location(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str
) -> None:
    op = PyWrenMapOperator(
        task_id="t",
        map_function=big_result,
        map_iterdata=[1, 2],
        max_xcom_bytes=10_000,
        clean_data=True,
        deferrable=False,
    )
    locations = op.execute({"ti": FakeTI(1, "run-big")})
    assert [loc["bucket"] for loc in locations] == [bucket, bucket]
    stored = keys(s3_server, bucket, "lithops.jobs/")
    assert {loc["output_key"] for loc in locations} <= stored  # kept despite clean_data
    small = PyWrenMapOperator(
        task_id="t", map_function=big_result, map_iterdata=[1], max_xcom_bytes=None, deferrable=False
    )
    assert small.execute({"ti": FakeTI(1, "run-big-2")}) == ["1" * 20000]
