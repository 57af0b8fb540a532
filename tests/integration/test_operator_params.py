"""Every seed parameter has its effect: operators executed for real (Lithops localhost
compute, the local S3 endpoint), with ``deferrable=False`` (the same trigger loop, run on
the worker) unless the point is the deferral itself."""

from __future__ import annotations

from typing import Any

import pytest
from payloads.functions import add, count_lines, positional, read_env, sleep_then, total

from pywren_deferrable import (
    IbmPyWrenCallAsyncOperator,
    IbmPyWrenMapOperator,
    IbmPyWrenMapReduceOperator,
    PyWrenCallAsyncOperator,
    PyWrenJobSensor,
    PyWrenMapOperator,
    PyWrenMapReduceOperator,
)
from pywren_deferrable.embedded import LocalS3Server
from pywren_deferrable.job import JobRef, key_layout
from pywren_deferrable.submit import SubmitError

pytestmark = pytest.mark.integration


class FakeTI:
    """Just enough of a task instance for ``xcom_pull``."""

    def __init__(self, xcoms: dict[str, Any]) -> None:
        self.xcoms = xcoms
        self.dag_id = "test_dag"

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcoms[task_ids]


def run(op: Any, xcoms: dict[str, Any] | None = None) -> Any:
    return op.execute({"ti": FakeTI(xcoms or {})})


def keys_under(s3: LocalS3Server, bucket: str, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_seed_aliases_are_the_operators() -> None:
    assert IbmPyWrenMapOperator is PyWrenMapOperator
    assert IbmPyWrenMapReduceOperator is PyWrenMapReduceOperator
    assert IbmPyWrenCallAsyncOperator is PyWrenCallAsyncOperator


@pytest.mark.engines
def test_extra_params_dict_and_tuple(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=add, map_iterdata=[1, 2, 3], extra_params={"y": 1}, deferrable=False
    )
    assert run(op) == [2, 3, 4]
    op = PyWrenMapOperator(
        task_id="t", map_function=positional, map_iterdata=[1, 2], extra_params=(8, 9), deferrable=False
    )
    assert run(op) == [[1, 8, 9], [2, 8, 9]]


@pytest.mark.engines
def test_iterdata_from_task_forms(lithops_conn: str) -> None:
    xcoms = {"up": [5, 6]}
    op = PyWrenMapOperator(task_id="t", map_function=add, iterdata_from_task="up", deferrable=False)
    assert run(op, xcoms) == [5, 6]
    op = PyWrenMapOperator(
        task_id="t",
        map_function=add,
        iterdata_from_task={"x": "up"},
        extra_params={"y": 10},
        deferrable=False,
    )
    assert run(op, xcoms) == [15, 16]
    with pytest.warns(DeprecationWarning, match="iterdata_form_task"):
        op = PyWrenMapOperator(task_id="t", map_function=add, iterdata_form_task="up", deferrable=False)
    assert run(op, xcoms) == [5, 6]


@pytest.mark.engines
def test_call_async_data_and_data_from_task(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(
        task_id="t", func=add, data={"x": 4}, data_from_task={"y": "up"}, deferrable=False
    )
    assert run(op, {"up": 4}) == 8


@pytest.mark.engines
def test_extra_env_reaches_the_functions(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t",
        map_function=read_env,
        map_iterdata=["a", "b"],
        extra_env={"PYWREN_TEST_VAR": "from-extra-env"},
        deferrable=False,
    )
    assert run(op) == ["a:from-extra-env", "b:from-extra-env"]


@pytest.mark.engines
def test_timeout_stops_a_slow_function(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(1, 60), (2, 0)], timeout=3, deferrable=False
    )
    with pytest.raises(Exception, match=r"(?s)00000.*TimeoutError"):
        run(op)


@pytest.fixture
def texts(s3_server: LocalS3Server, bucket: str) -> str:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="lines/a.txt", Body=b"".join(b"line %d\n" % i for i in range(40)))
    client.put_object(Bucket=bucket, Key="lines/b.txt", Body=b"one\ntwo\n")
    return f"s3://{bucket}/lines/"


@pytest.mark.engines
def test_chunk_size_splits_objects(lithops_conn: str, texts: str) -> None:
    # Without chunking: one call per object.
    whole = PyWrenMapOperator(task_id="t", map_function=count_lines, map_iterdata=[texts], deferrable=False)
    assert run(whole) == [40, 2]
    # a.txt is 310 bytes: 100-byte chunks make 4 calls, b.txt (8 bytes) 1 call.
    sized = PyWrenMapOperator(
        task_id="t", map_function=count_lines, map_iterdata=[texts], chunk_size=100, wait_for_result=False
    )
    job = JobRef.from_dict(run(sized))
    assert job.total_calls == {"M000": 5}
    sized.wait_for_result, sized.deferrable = True, False
    results = run(sized)
    assert len(results) == 5 and sum(results) == 42  # chunks are cut at newlines: no line lost


@pytest.mark.engines
def test_chunk_n_splits_objects(
    lithops_conn: str, texts: str, engine: str, request: pytest.FixtureRequest
) -> None:
    if engine == "pywren":
        # Measured: [12, 10, 10, 9] lines for a.txt's 40. pywren 1.7.3 sizes chunk_n chunks
        # as size // n + size % n and one of its boundaries reads a line twice; chunk_size
        # (above) is exact.
        request.applymarker(
            pytest.mark.xfail(strict=True, reason="pywren-ibm-cloud 1.7.3's chunk_n reads one line twice")
        )
    chunked = PyWrenMapOperator(
        task_id="t", map_function=count_lines, map_iterdata=[texts], chunk_n=4, deferrable=False
    )
    results = run(chunked)
    assert len(results) == 8 and sum(results) == 42


@pytest.mark.engines
def test_reducer_one_per_object(lithops_conn: str, texts: str) -> None:
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=count_lines,
        reduce_function=total,
        map_iterdata=[texts],
        chunk_n=3,
        reducer_one_per_object=True,
        deferrable=False,
    )
    assert run(op) == [40, 2]
    single = PyWrenMapReduceOperator(
        task_id="t",
        map_function=count_lines,
        reduce_function=total,
        map_iterdata=[texts],
        chunk_n=3,
        deferrable=False,
    )
    assert run(single) == 42


@pytest.mark.engines
def test_reducer_wait_local_gives_the_same_result(lithops_conn: str) -> None:
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=add,
        reduce_function=total,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        reducer_wait_local=True,
        deferrable=False,
    )
    assert run(op) == 9


@pytest.mark.engines
def test_wait_for_result_false_then_sensor(lithops_conn: str, s3_server: LocalS3Server, bucket: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=add, map_iterdata=[1, 2], extra_params={"y": 5}, wait_for_result=False
    )
    job = run(op)
    assert set(job) >= {"executor_id", "job_ids", "total_calls", "storage"}
    assert "secret" not in repr(job).lower() and "embedded-secret-key" not in repr(job)
    sensor = PyWrenJobSensor(task_id="wait", job=job, deferrable=False, poke_interval=1)
    assert run(sensor) == [6, 7]


@pytest.mark.engines
def test_fetch_result_false_returns_locations(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, engine: str
) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=add, map_iterdata=[1, 2], fetch_result=False, deferrable=False
    )
    locations = run(op)
    assert [loc["bucket"] for loc in locations] == [bucket, bucket]
    stored = set(keys_under(s3_server, bucket, key_layout(engine).jobs_prefix + "/"))
    assert all(loc["status_key"] in stored for loc in locations)
    assert locations[0]["status_key"].endswith("/00000/status.json")


@pytest.mark.engines
def test_clean_data_deletes_only_the_jobs_objects(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str, engine: str
) -> None:
    kept = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1], deferrable=False)
    assert run(kept) == [1]
    before = set(keys_under(s3_server, bucket, ""))
    cleaned = PyWrenMapOperator(
        task_id="t", map_function=add, map_iterdata=[1, 2], clean_data=True, deferrable=False
    )
    assert run(cleaned) == [1, 2]
    after = set(keys_under(s3_server, bucket, ""))
    assert after == before  # the other job's objects (and the runtime metadata) are untouched
    assert any(k.startswith(key_layout(engine).jobs_prefix + "/") for k in after)


@pytest.mark.engines
def test_deferrable_defers_with_a_secret_free_trigger(lithops_conn: str) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2])
    with pytest.raises(TaskDeferred) as deferred:
        run(op)
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "pywren_deferrable.triggers.job.PyWrenJobTrigger"
    assert "embedded-secret-key" not in repr(kwargs) and "embedded-access-key" not in repr(kwargs)
    assert deferred.value.method_name == "execute_complete"


def test_executor_overrides_reach_the_backend_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """remote_invocation / invoke_pool_threads / pywren_executor_config land where Lithops'
    FaaS invoker reads them (config[backend][...]); checked on a code_engine Connection
    since the localhost backend has no remote invoker."""
    import json

    conn = {
        "conn_type": "lithops",
        "extra": {
            "lithops": {"backend": "code_engine", "storage": "ibm_cos"},
            "code_engine": {"region": "eu-de"},
            "ibm_cos": {"region": "eu-de", "storage_bucket": "b"},
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(conn))
    op = PyWrenMapOperator(
        task_id="t",
        map_function=add,
        map_iterdata=[1],
        remote_invocation=True,
        invoke_pool_threads=64,
        pywren_executor_config={"runtime": "me/runtime:1", "runtime_memory": 2048},
    )
    config = op._hook().get_config()
    assert config["code_engine"] == {
        "region": "eu-de",
        "remote_invoker": True,
        "invoke_pool_threads": 64,
        "runtime": "me/runtime:1",
        "runtime_memory": 2048,
    }
    assert config["lithops"]["data_cleaner"] is False


def test_memory_and_module_options_reach_lithops(lithops_conn: str) -> None:
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=add,
        reduce_function=total,
        map_iterdata=[1],
        runtime_memory=512,
        map_runtime_memory=1024,
        reduce_runtime_memory=2048,
        include_modules=["payloads"],
        exclude_modules=["numpy"],
    )
    spec = op.build_spec({"ti": FakeTI({})}, op._hook().get_config())
    assert spec.options["map_runtime_memory"] == 1024
    assert spec.options["reduce_runtime_memory"] == 2048
    assert spec.options["include_modules"] == ["payloads"]
    assert spec.options["exclude_modules"] == ["numpy"]
    mapper = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1], runtime_memory=512)
    assert mapper.build_spec({}, mapper._hook().get_config()).options["runtime_memory"] == 512


def test_job_link_is_published_from_the_connection_template(
    monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server, bucket: str
) -> None:
    import json

    from pywren_deferrable.embedded import embedded_connection

    conn = embedded_connection(s3_server.endpoint, bucket)
    conn["extra"]["console_url"] = "{endpoint}/browser/{bucket}/{prefix}"
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(conn))

    class RecordingTI(FakeTI):
        pushed: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.pushed[key] = value

    ti = RecordingTI({})
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1], wait_for_result=False)
    job = op.execute({"ti": ti})
    assert ti.pushed["_link_PyWrenJobLink"] == (
        f"{s3_server.endpoint}/browser/{bucket}/lithops.jobs/{job['executor_id']}-M000/"
    )


def test_a_map_over_an_empty_prefix_names_the_prefix_and_bucket(lithops_conn: str, bucket: str) -> None:
    """Lithops says only "No objects found": the error must say where nothing was found."""
    op = PyWrenMapOperator(
        task_id="t", map_function=count_lines, map_iterdata=[f"s3://{bucket}/nothing-here/"], deferrable=False
    )
    with pytest.raises(SubmitError) as caught:
        run(op)
    message = str(caught.value)
    assert "No objects found: no object under " in message
    assert f"{bucket}/nothing-here/" in message and f"(bucket {bucket!r})" in message


def test_resume_logs_the_jobs_usage(lithops_conn: str, capfd: pytest.CaptureFixture[str]) -> None:
    """One line with calls, wall, call-seconds and GB-s, from the statuses read for the
    results; the return value is unchanged. (Airflow 3 logs through structlog to stdout.)"""
    import re

    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2, 3], extra_params={"y": 1})
    op.deferrable = False
    assert run(op) == [2, 3, 4]
    lines = re.findall(r"Job [0-9a-f]{6}-\d+: \d+ calls, [^\[]*", capfd.readouterr().out)
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"Job [0-9a-f]{6}-\d+: 3 calls, [\d.]+s wall, [\d.]+ call-seconds, [\d.]+ GB-s, ~0 USD "
        r"\(localhost: runs on this machine\)",
        lines[0].strip(),
    ), lines[0]
