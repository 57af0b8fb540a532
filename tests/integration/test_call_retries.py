"""``call_retries`` and Airflow retries that resubmit only the failed calls, with real
Lithops jobs (localhost compute, the local S3 endpoint).

The payload ``flaky`` leaves one file per run in a directory, so each test counts how
often every input really ran, and fails the first run(s) of one input only.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from payloads.functions import flaky, total

from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator
from pywren_deferrable.embedded import LocalS3Server
from pywren_deferrable.job import JobRef
from pywren_deferrable.triggers.job import PyWrenJobTrigger

pytestmark = pytest.mark.integration


class FakeTI:
    """A task instance as far as the operators use it (lineage identity, XCom)."""

    def __init__(self, try_number: int = 1, run_id: str = "run-1", max_tries: int = 0) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index = "dag", run_id, "t", -1
        self.try_number, self.max_tries = try_number, max_tries

    def xcom_pull(self, task_ids: str) -> Any:
        raise KeyError(task_ids)

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def runs(marker_dir: Path) -> dict[int, int]:
    """How many times each input ran."""
    counts: dict[int, int] = {}
    for path in marker_dir.iterdir():
        x = int(path.name.split("-")[1])
        counts[x] = counts.get(x, 0) + 1
    return counts


def executors(s3: LocalS3Server, bucket: str) -> dict[str, set[str]]:
    """Executor id -> call ids that wrote a status, from the objects in storage."""
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="lithops.jobs/")
    found: dict[str, set[str]] = {}
    for page in pages:
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            if parts[-1] == "status.json":
                job_key = parts[1]
                found.setdefault(job_key, set()).add(parts[2])
    return found


def job_objects(s3: LocalS3Server, bucket: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="lithops.jobs/")
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def flaky_map(
    marker_dir: Path, inputs: list[int], *, bad: int, failures: int = 1, **params: Any
) -> PyWrenMapOperator:
    """A map of ``flaky`` over ``inputs`` whose input ``bad`` fails its first ``failures`` runs."""
    return PyWrenMapOperator(
        task_id="t",
        map_function=flaky,
        map_iterdata=inputs,
        extra_params={"bad": bad, "failures": failures, "marker_dir": str(marker_dir)},
        **params,
    )


def defer(op: Any, ti: FakeTI, method: str = "execute", event: Any = None) -> dict[str, Any]:
    with pytest.raises(TaskDeferred) as deferred:
        if method == "execute":
            op.execute({"ti": ti})
        else:
            op.execute_complete({"ti": ti}, event)
    return deferred.value.trigger.serialize()[1]


async def event_of(trigger_kwargs: dict[str, Any]) -> dict[str, Any]:
    return dict((await PyWrenJobTrigger(**trigger_kwargs).wait_for_event()).payload)


def test_a_failed_call_is_resubmitted_alone_and_results_stay_in_order(
    lithops_conn: str,
    s3_server: LocalS3Server,
    bucket: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    op = flaky_map(tmp_path, list(range(10)), bad=3, call_retries=1, deferrable=False)
    assert op.execute({"ti": FakeTI(run_id="run-once")}) == list(range(10))
    # The usage line counts the wall time of both rounds (Airflow 3 logs to stdout).
    assert re.search(r"Job [0-9a-f]{6}-\d+: 10 calls, [\d.]+s wall, .* \(2 rounds\)", capfd.readouterr().out)
    assert runs(tmp_path) == {x: 2 if x == 3 else 1 for x in range(10)}
    rounds = sorted(executors(s3_server, bucket).values(), key=len)
    assert [len(calls) for calls in rounds] == [1, 10]  # the second round ran one call


async def test_rounds_defer_between_them_and_clean_data_cleans_every_round(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, tmp_path: Path
) -> None:
    def operator() -> PyWrenMapOperator:
        return flaky_map(tmp_path, list(range(10)), bad=3, call_retries=1, clean_data=True)

    ti = FakeTI(run_id="run-defer")
    first = defer(operator(), ti)
    assert first["fail_fast"] is False  # the round waits for all its calls: it has a retry left
    event = await event_of(first)
    assert event["status"] == "failed" and event["failed_calls"] == {"M000": ["00003"]}
    # The task resumes in a new process (a fresh operator), resubmits input 3, and defers again.
    second = defer(operator(), ti, "execute_complete", event)
    assert JobRef.from_dict(second["job"]).total_calls == {"M000": 1}
    assert second["fail_fast"] is True  # last try: fail_fast applies
    assert len(str(second["resume_state"])) < 3000  # small: it is stored in the DB
    assert operator().execute_complete({"ti": ti}, await event_of(second)) == list(range(10))
    assert executors(s3_server, bucket) == {}  # both rounds cleaned
    keys = s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount")
    assert keys == 0  # the lineage marker is gone too


async def test_killing_the_task_in_a_later_round_cleans_every_round(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, tmp_path: Path
) -> None:
    def operator() -> PyWrenMapOperator:
        return flaky_map(tmp_path, list(range(3)), bad=0, call_retries=1, clean_data=True)

    ti = FakeTI(run_id="run-kill")
    event = await event_of(defer(operator(), ti))
    second = defer(operator(), ti, "execute_complete", event)
    assert {k.split("/")[1][:8] for k in job_objects(s3_server, bucket)} == {
        event["job"]["executor_id"],
        second["job"]["executor_id"],
    }
    await PyWrenJobTrigger(**second).on_kill()  # a user marks the task failed in round 2
    await asyncio.sleep(2)  # a call still running would write its status now
    assert job_objects(s3_server, bucket) == []


def test_a_call_that_always_fails_reports_its_tries(lithops_conn: str, tmp_path: Path) -> None:
    op = flaky_map(tmp_path, list(range(4)), bad=3, failures=99, call_retries=2, deferrable=False)
    with pytest.raises(AirflowException) as failure:
        op.execute({"ti": FakeTI(run_id="run-always")})
    message = str(failure.value)
    assert "1 input(s) failed on every try (call_retries=2; #: index in the inputs)" in message
    assert "input #3 = 3 failed 3 tries" in message
    assert "ValueError: run 3 of input 3 fails" in message  # the last try's traceback
    assert runs(tmp_path) == {0: 1, 1: 1, 2: 1, 3: 3}


async def test_an_airflow_retry_resubmits_only_the_failed_calls(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, tmp_path: Path
) -> None:
    def operator() -> PyWrenMapOperator:
        return flaky_map(tmp_path, list(range(10)), bad=3, fail_fast=False, clean_data=True)

    # The task has retries=1 (max_tries=1): try 1 keeps its objects for try 2, despite clean_data.
    first = defer(operator(), FakeTI(1, "run-retry", max_tries=1))
    event = await event_of(first)
    with pytest.raises(AirflowException, match="input #3 = 3 failed 1 try"):
        operator().execute_complete({"ti": FakeTI(1, "run-retry", max_tries=1)}, event)
    assert [len(c) for c in executors(s3_server, bucket).values()] == [10]
    # Try 2 reattaches to try 1's job, which has ended: its failed call is resubmitted alone.
    reattached = defer(operator(), FakeTI(2, "run-retry", max_tries=1))
    assert reattached["job"]["executor_id"] == first["job"]["executor_id"]
    resubmitted = defer(
        operator(), FakeTI(2, "run-retry", max_tries=1), "execute_complete", await event_of(reattached)
    )
    assert JobRef.from_dict(resubmitted["job"]).total_calls == {"M000": 1}
    event = await event_of(resubmitted)
    assert sorted(len(c) for c in executors(s3_server, bucket).values()) == [1, 10]
    result = operator().execute_complete({"ti": FakeTI(2, "run-retry", max_tries=1)}, event)
    assert result == list(range(10))
    assert runs(tmp_path) == {x: 2 if x == 3 else 1 for x in range(10)}
    assert executors(s3_server, bucket) == {}  # clean_data: both tries' jobs


async def test_an_airflow_retry_after_fail_fast_waits_for_the_rest_then_resubmits(
    lithops_conn: str, tmp_path: Path
) -> None:
    def operator() -> PyWrenMapOperator:
        return flaky_map(tmp_path, list(range(4)), bad=0)

    event = await event_of(defer(operator(), FakeTI(1, "run-ff")))
    assert event["status"] == "failed"
    with pytest.raises(AirflowException, match="input #0 = 0 failed 1 try"):
        operator().execute_complete({"ti": FakeTI(1, "run-ff")}, event)
    reattached = defer(operator(), FakeTI(2, "run-ff"))
    assert reattached["fail_fast"] is False
    again = defer(operator(), FakeTI(2, "run-ff"), "execute_complete", await event_of(reattached))
    assert JobRef.from_dict(again["job"]).total_calls == {"M000": 1}
    assert operator().execute_complete({"ti": FakeTI(2, "run-ff")}, await event_of(again)) == [0, 1, 2, 3]
    assert runs(tmp_path) == {0: 2, 1: 1, 2: 1, 3: 1}


@pytest.mark.parametrize("reducer_wait_local", [False, True])
def test_map_reduce_reduces_once_every_map_input_succeeded(
    lithops_conn: str, tmp_path: Path, reducer_wait_local: bool
) -> None:
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=flaky,
        reduce_function=total,
        map_iterdata=list(range(6)),
        extra_params={"bad": 2, "failures": 1, "marker_dir": str(tmp_path)},
        call_retries=1,
        reducer_wait_local=reducer_wait_local,
        deferrable=False,
    )
    assert op.execute({"ti": FakeTI(run_id=f"run-mr-{reducer_wait_local}")}) == sum(range(6))
    assert runs(tmp_path) == {x: 2 if x == 2 else 1 for x in range(6)}


def test_map_reduce_without_failures_keeps_the_remote_reducer(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, tmp_path: Path
) -> None:
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=flaky,
        reduce_function=total,
        map_iterdata=list(range(4)),
        extra_params={"bad": -1, "failures": 0, "marker_dir": str(tmp_path)},
        call_retries=2,
        deferrable=False,
    )
    assert op.execute({"ti": FakeTI(run_id="run-mr-ok")}) == 6
    jobs = executors(s3_server, bucket)
    assert len(jobs) == 2 and {k.rsplit("-", 1)[1] for k in jobs} == {"M000", "R000"}  # one executor


def test_call_async_is_retried(lithops_conn: str, tmp_path: Path) -> None:
    op = PyWrenCallAsyncOperator(
        task_id="t",
        func=flaky,
        data={"x": 5, "bad": 5, "failures": 2, "marker_dir": str(tmp_path)},
        call_retries=2,
        deferrable=False,
    )
    assert op.execute({"ti": FakeTI(run_id="run-ca")}) == 5
    assert runs(tmp_path) == {5: 3}


async def test_an_airflow_retry_with_other_inputs_submits_every_call(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, tmp_path: Path
) -> None:
    def operator(inputs: list[int]) -> PyWrenMapOperator:
        return flaky_map(tmp_path, inputs, bad=1)

    event = await event_of(defer(operator([0, 1]), FakeTI(1, "run-changed")))
    with pytest.raises(AirflowException, match="input #1 = 1 failed 1 try"):
        operator([0, 1]).execute_complete({"ti": FakeTI(1, "run-changed")}, event)
    # The DAG changed before the retry: try 1's results belong to other inputs.
    again = defer(operator([5, 6, 7]), FakeTI(2, "run-changed"))
    assert again["job"]["executor_id"] != event["job"]["executor_id"]
    assert JobRef.from_dict(again["job"]).total_calls == {"M000": 3}


def test_fetch_result_false_points_each_input_at_its_last_round(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, tmp_path: Path
) -> None:
    op = flaky_map(tmp_path, list(range(3)), bad=1, call_retries=1, fetch_result=False, deferrable=False)
    locations = op.execute({"ti": FakeTI(run_id="run-locations")})
    jobs = {len(calls): job_key for job_key, calls in executors(s3_server, bucket).items()}
    assert [loc["status_key"].split("/")[1:3] for loc in locations] == [
        [jobs[3], "00000"],
        [jobs[1], "00000"],  # input 1 succeeded in the second round, as its only call
        [jobs[3], "00002"],
    ]


DAG_FILE = """
from datetime import timedelta

import pendulum
from airflow.sdk import DAG
from payloads.functions import flaky

from pywren_deferrable import PyWrenMapOperator

with DAG("call_retries_dag", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
    PyWrenMapOperator(
        task_id="call_retries",
        map_function=flaky,
        map_iterdata=list(range(10)),
        extra_params={{"bad": 3, "failures": 1, "marker_dir": {a!r}}},
        call_retries=1,
        poll_interval=1,
    )
    PyWrenMapOperator(
        task_id="airflow_retries",
        map_function=flaky,
        map_iterdata=list(range(10)),
        extra_params={{"bad": 3, "failures": 1, "marker_dir": {b!r}}},
        retries=1,
        retry_delay=timedelta(seconds=0),
        poll_interval=1,
    )
"""


def test_through_airflow_dag_test(
    airflow_db: str,
    lithops_conn: str,
    s3_server: LocalS3Server,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real task runner: deferral, resume, and an Airflow retry (try 2) of a real TI."""
    from pywren_deferrable.embedded import run_dag_test

    dags, a, b = tmp_path / "dags", tmp_path / "a", tmp_path / "b"
    for path in (dags, a, b):
        path.mkdir()
    from airflow import settings

    # dag.test() syncs the "dags-folder" bundle, whose path is settings.DAGS_FOLDER.
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(dags))
    (dags / "call_retries_dag.py").write_text(DAG_FILE.format(a=str(a), b=str(b)))
    state, results = run_dag_test(str(dags), "call_retries_dag")
    assert state == "success"
    assert results == {"call_retries": list(range(10)), "airflow_retries": list(range(10))}
    assert runs(a) == runs(b) == {x: 2 if x == 3 else 1 for x in range(10)}
    # Each task: a first job of 10 calls, then one of 1 call (not 10 again).
    assert sorted(len(c) for c in executors(s3_server, bucket).values()) == [1, 1, 10, 10]
