"""DAGs through real Airflow 3 components: api-server, scheduler (LocalExecutor), dag-processor
and triggerer(s), all on 127.0.0.1, against the embedded S3 endpoint behind a pausable proxy.

The components start once for this module (see :mod:`airflow_cluster`); every test triggers
DAG runs through the REST API and checks states, XComs and logs exactly. Test DAGs live in
``tests/e2e/dags`` (payloads in ``tests/payloads``); the seed's example comes from
``example_dags``.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from airflow_cluster import AirflowCluster, ClusterError, TcpProxy, running_cluster
from tls_cos import CosGateway, ca_env, ibm_cos_connection, start_gateway

from pywren_deferrable.embedded import LocalS3Server, embedded_connection_env, embedded_pywren_connection

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
E2E_DAGS = Path(__file__).resolve().parent / "dags"
SLEEP_DAG, SLEEP_TASK = "e2e_sleep_map", "sleep_map"
FAIL_DAG, FAIL_TASK = "e2e_fail_map", "fail_map"
EXAMPLE_DAG, EXAMPLE_TASK = "example_pywren_map", "map_task"
PYWREN_DAG = "e2e_map_pywren"
IBM_COS_DAG = "e2e_ibm_cos"
IBM_COS_API_KEY = f"APIKEY-{uuid.uuid4().hex}"
ENGINE_DAGS = {"lithops": (EXAMPLE_DAG, EXAMPLE_TASK), "pywren": (PYWREN_DAG, "map")}
DAG_IDS = [EXAMPLE_DAG, SLEEP_DAG, FAIL_DAG, PYWREN_DAG, IBM_COS_DAG]
RUN_TIMEOUT = 240.0
OUTAGE_SECONDS = 20.0


@pytest.fixture(scope="module")
def s3_proxy(s3_server: LocalS3Server) -> Iterator[TcpProxy]:
    """A pausable TCP proxy in front of the session's S3 endpoint: the Connection uses it."""
    proxy = TcpProxy(s3_server.port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def e2e_bucket(s3_server: LocalS3Server) -> str:
    return s3_server.create_bucket(f"e2e-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def cos_gateway(s3_server: LocalS3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosGateway]:
    """The IBM COS stand-in over TLS (see :mod:`tls_cos`) in front of the session's S3 endpoint."""
    gateway = start_gateway(s3_server.endpoint, str(tmp_path_factory.mktemp("test-ca")), {IBM_COS_API_KEY})
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def cos_bucket(s3_server: LocalS3Server) -> str:
    return s3_server.create_bucket(f"e2e-cos-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    s3_proxy: TcpProxy,
    e2e_bucket: str,
    cos_gateway: CosGateway,
    cos_bucket: str,
) -> Iterator[AirflowCluster]:
    """api-server, scheduler, dag-processor and one triggerer for the whole module."""
    home = tmp_path_factory.mktemp("airflow-cluster")
    airflow = AirflowCluster(
        home,
        bundles={"examples": ROOT / "example_dags", "e2e": E2E_DAGS},
        env={
            "AIRFLOW_CONN_LITHOPS_DEFAULT": embedded_connection_env(s3_proxy.endpoint, e2e_bucket),
            # Used by e2e_map_pywren only (the pywren engine runs on Python 3.10).
            "AIRFLOW_CONN_PYWREN_DEFAULT": json.dumps(
                embedded_pywren_connection(s3_proxy.endpoint, e2e_bucket)
            ),
            # e2e_ibm_cos: IBM COS over TLS with an IAM API key; every component (and the
            # Lithops runner and workers they start) trusts the test CA.
            "AIRFLOW_CONN_IBM_COS_TLS": ibm_cos_connection(
                cos_gateway, cos_bucket, "iam", api_key=IBM_COS_API_KEY
            ),
            **ca_env(cos_gateway.ca.ca_file),
            # The DAGs' payload modules (tests/payloads, example_dags/pywren_functions), for
            # the dag-processor, the tasks and the Lithops runner alike.
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "example_dags")]),
        },
    )
    started = time.monotonic()
    airflow.migrate()
    migrated = time.monotonic()
    with running_cluster(airflow):
        airflow.wait_ready(DAG_IDS)
        ready = time.monotonic()
        airflow.timings.update(migrate=migrated - started, start=ready - migrated)
        print(
            f"\nAirflow cluster: db migrate {migrated - started:.1f}s, components ready {ready - migrated:.1f}s"
        )
        yield airflow


@pytest.fixture
def airflow(cluster: AirflowCluster, s3_proxy: TcpProxy) -> Iterator[AirflowCluster]:
    """The module's cluster, back to its base shape (one of each component, S3 reachable)
    after every test, whatever the test killed or paused."""
    yield cluster
    s3_proxy.resume()
    for name in [n for n in cluster.components if n not in cluster.BASE_COMPONENTS]:
        cluster.stop(name, timeout=5)
        del cluster.components[name]
    restarted = [name for name in cluster.BASE_COMPONENTS if not cluster.components[name].alive()]
    for name in restarted:
        cluster.restart(name)
    if restarted:
        cluster.wait_ready(DAG_IDS)
    cluster.fail_unfinished_runs()  # a failed test must not leave work for the next one


def run_to_end(airflow: AirflowCluster, dag_id: str, conf: dict[str, Any] | None = None) -> str:
    run_id = airflow.trigger_dag(dag_id, conf)
    airflow.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    return run_id


def wait_deferred(airflow: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    """Wait until the task is deferred and its trigger runs in a triggerer."""
    airflow.wait_for_ti_state(dag_id, run_id, task_id, {"deferred"}, RUN_TIMEOUT)

    def assigned() -> dict[str, Any] | None:
        ti = airflow.task_instance(dag_id, run_id, task_id)
        if ti["state"] != "deferred":
            raise ClusterError(f"{task_id} left 'deferred' ({ti['state']}) before its trigger was seen")
        return ti if ti.get("triggerer_job") else None

    return dict(airflow.wait_for("the trigger to be assigned to a triggerer", assigned, 60))


def progress_lines(log: str) -> list[str]:
    return re.findall(r"job M000: \d+/\d+ done, \d+ running, \d+ failed(?:, ETA \w+)?", log)


def runner_pid(log: str) -> int:
    match = re.search(r"Local job hosted by runner pid (\d+)", log)
    assert match, "the task log does not name the runner that hosts the job"
    return int(match.group(1))


def is_gone(pid: int) -> bool:
    """True when the process has exited (reaped, or a zombie waiting for its parent)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_succeeded_once(
    airflow: AirflowCluster, dag_id: str, run_id: str, task_id: str, expected: Any
) -> str:
    """The run and the task succeeded on the first try with ``expected`` as XCom; return the log."""
    ti = airflow.task_instance(dag_id, run_id, task_id)
    assert (ti["state"], ti["try_number"]) == ("success", 1), airflow.scheduler_complaints(ti["id"])
    assert airflow.dag_run(dag_id, run_id)["state"] == "success"
    assert airflow.xcom(dag_id, run_id, task_id) == expected
    return airflow.task_log(dag_id, run_id, task_id)


@pytest.mark.engines
def test_seed_example_map_returns_2_3_4(airflow: AirflowCluster, engine: str) -> None:
    """The seed's example on Lithops; the same map on the pywren engine's Connection."""
    dag_id, task_id = ENGINE_DAGS[engine]
    run_id = run_to_end(airflow, dag_id)
    log = assert_succeeded_once(airflow, dag_id, run_id, task_id, [2, 3, 4])
    # It went through the triggerer: the worker deferred, the trigger fired, the task resumed.
    assert "Pausing task as DEFERRED" in log
    assert "job M000: 3/3 done, 0 running, 0 failed" in log
    assert "Job " in log and "all 3 calls done" in log
    hosted = runner_pid(log)
    airflow.wait_for("the runner to leave once its job ended", lambda: is_gone(hosted), 30)


def test_deferred_task_holds_no_worker_slot(airflow: AirflowCluster) -> None:
    run_id = airflow.trigger_dag(SLEEP_DAG, {"seconds": 15})
    ti = wait_deferred(airflow, SLEEP_DAG, run_id, SLEEP_TASK)
    worker_pid = ti["pid"]
    assert worker_pid
    runner = runner_pid(airflow.task_log(SLEEP_DAG, run_id, SLEEP_TASK))

    def slot_freed() -> bool:
        # The task process that submitted the job has exited, its executor worker is back
        # to idle (it retitles itself once its supervisor is done) and runs nothing, and
        # no task instance holds a slot.
        workers = airflow.executor_workers()
        assert workers, "no LocalExecutor worker process found under the scheduler"
        return (
            is_gone(worker_pid)
            and all(w.cmdline()[0].endswith("<idle>") and not w.children() for w in workers)
            and not airflow.task_instances(state=["running", "queued", "scheduled", "restarting"])
        )

    airflow.wait_for("the worker slot to be freed", slot_freed, 30)
    running_job = psutil.Process(runner)
    component_tree = airflow.component_pids()
    # ...while the task is still deferred and its calls still run, outside Airflow.
    assert airflow.task_instance(SLEEP_DAG, run_id, SLEEP_TASK)["state"] == "deferred"
    assert running_job.is_running() and running_job.status() != psutil.STATUS_ZOMBIE
    assert runner not in component_tree, "the job is hosted inside an Airflow component"

    run_state = airflow.wait_for_run(SLEEP_DAG, run_id, RUN_TIMEOUT)
    assert run_state == "success"
    log = assert_succeeded_once(airflow, SLEEP_DAG, run_id, SLEEP_TASK, [1, 2, 3, 4])
    # The trigger's progress lines are part of the task's log, as the UI shows it.
    progress = progress_lines(log)
    assert any(
        re.fullmatch(r"job M000: [0-3]/4 done, [0-4] running, 0 failed(?:, ETA \w+)?", line)
        for line in progress
    ), progress
    assert progress[-1] == "job M000: 4/4 done, 0 running, 0 failed"


def test_triggerer_killed_mid_job_is_replaced_without_loss(airflow: AirflowCluster) -> None:
    run_id = airflow.trigger_dag(SLEEP_DAG, {"seconds": 10})
    ti = wait_deferred(airflow, SLEEP_DAG, run_id, SLEEP_TASK)
    first_triggerer = ti["triggerer_job"]["id"]
    airflow.wait_for(
        "the trigger's first poll",
        lambda: progress_lines(airflow.trigger_logs(SLEEP_DAG, run_id, SLEEP_TASK).get(first_triggerer, "")),
        60,
    )

    airflow.kill("triggerer")
    assert airflow.task_instance(SLEEP_DAG, run_id, SLEEP_TASK)["state"] == "deferred"
    airflow.start_triggerer()

    assert airflow.wait_for_run(SLEEP_DAG, run_id, RUN_TIMEOUT) == "success"
    assert_succeeded_once(airflow, SLEEP_DAG, run_id, SLEEP_TASK, [1, 2, 3, 4])
    logs = airflow.trigger_logs(SLEEP_DAG, run_id, SLEEP_TASK)
    # The killed triggerer never fired; a new one picked the trigger up and fired once.
    assert "Trigger fired event" not in logs[first_triggerer]
    fired = [job for job, text in logs.items() if "Trigger fired event" in text]
    assert len(fired) == 1 and fired[0] != first_triggerer, sorted(logs)
    assert "job M000: 4/4 done, 0 running, 0 failed" in logs[fired[0]]


def test_storage_outage_mid_job_is_ridden_out(
    airflow: AirflowCluster, s3_proxy: TcpProxy, s3_server: LocalS3Server, e2e_bucket: str
) -> None:
    # The calls sleep through the whole outage: only the trigger sees it (a call that
    # wrote its status during the outage would fail inside Lithops, not in our code).
    run_id = airflow.trigger_dag(SLEEP_DAG, {"seconds": OUTAGE_SECONDS + 12})
    wait_deferred(airflow, SLEEP_DAG, run_id, SLEEP_TASK)
    airflow.wait_for(
        "the trigger's first poll",
        lambda: progress_lines(airflow.task_log(SLEEP_DAG, run_id, SLEEP_TASK)),
        60,
    )
    direct = s3_server.client()  # behind the proxy's back: does every call run?

    def all_calls_started() -> bool:
        listing = direct.list_objects_v2(Bucket=e2e_bucket, Prefix="lithops.jobs/")
        inits = {
            k["Key"].rsplit("/", 1)[0] for k in listing.get("Contents", []) if k["Key"].endswith(".init")
        }
        log = airflow.task_log(SLEEP_DAG, run_id, SLEEP_TASK)
        executor = re.search(r"Submitted Lithops executor (\S+) jobs", log)
        return bool(executor) and len({i for i in inits if f"{executor.group(1)}-M000" in i}) == 4

    airflow.wait_for("all four calls to start", all_calls_started, 60)
    s3_proxy.pause()
    try:
        time.sleep(OUTAGE_SECONDS)
        assert airflow.task_instance(SLEEP_DAG, run_id, SLEEP_TASK)["state"] == "deferred"
    finally:
        s3_proxy.resume()

    assert airflow.wait_for_run(SLEEP_DAG, run_id, RUN_TIMEOUT) == "success"
    log = assert_succeeded_once(airflow, SLEEP_DAG, run_id, SLEEP_TASK, [1, 2, 3, 4])
    # The trigger did hit the outage, retried, and saw storage come back.
    assert re.search(r"storage error\W+retrying", log), log[-3000:]
    assert re.search(r"storage reachable again after \d+s", log), log[-3000:]


def test_two_triggerers_end_the_task_once(airflow: AirflowCluster) -> None:
    airflow.start_triggerer("triggerer-2")
    airflow.wait_for("two live triggerers", lambda: len(airflow.alive_triggerers()) == 2, 90)

    run_id = airflow.trigger_dag(SLEEP_DAG, {"seconds": 5})
    wait_deferred(airflow, SLEEP_DAG, run_id, SLEEP_TASK)
    assert airflow.wait_for_run(SLEEP_DAG, run_id, RUN_TIMEOUT) == "success"
    log = assert_succeeded_once(airflow, SLEEP_DAG, run_id, SLEEP_TASK, [1, 2, 3, 4])
    assert len(airflow.alive_triggerers()) == 2, "a triggerer died during the run"
    logs = airflow.trigger_logs(SLEEP_DAG, run_id, SLEEP_TASK)
    fired = [job for job, text in logs.items() if "Trigger fired event" in text]
    assert len(fired) == 1, {job: text[-500:] for job, text in logs.items()}
    # One event reached the task, which resumed once and pushed one XCom.
    assert log.count("Trigger fired event") == 1
    assert log.count("Pushing xcom") == 1


def test_failing_call_fails_task_with_remote_traceback(airflow: AirflowCluster) -> None:
    run_id = run_to_end(airflow, FAIL_DAG)
    assert airflow.dag_run(FAIL_DAG, run_id)["state"] == "failed"
    ti = airflow.task_instance(FAIL_DAG, run_id, FAIL_TASK)
    assert (ti["state"], ti["try_number"]) == ("failed", 1)
    log = airflow.task_log(FAIL_DAG, run_id, FAIL_TASK)
    # The trigger's lines (progress with the failure) and the worker's error are both there.
    assert any(
        re.fullmatch(r"job M000: \d/4 done, \d running, 1 failed(?:, ETA \w+)?", line)
        for line in progress_lines(log)
    ), log[-3000:]
    assert "M000/00002" in log
    # The remote traceback, down to the payload's frame.
    assert "Traceback" in log
    assert "in fail_on" in log
    assert "ValueError: boom on 3" in log


def test_ibm_cos_over_tls_with_an_iam_api_key(
    airflow: AirflowCluster, cos_gateway: CosGateway, cos_bucket: str, s3_server: LocalS3Server
) -> None:
    """Lithops' ibm_cos backend in the runner and its workers, the triggerer's client and the
    result fetcher, all over TLS with IAM bearer tokens from the IAM stand-in."""
    texts = {"cos-input/a.txt": "one two\nthree\n" * 10, "cos-input/b.txt": "four\n" * 20}
    client = s3_server.client()
    for key, text in texts.items():
        client.put_object(Bucket=cos_bucket, Key=key, Body=text.encode())
    cos_gateway.requests.clear()
    run_id = run_to_end(airflow, IBM_COS_DAG)
    counts = airflow.xcom(IBM_COS_DAG, run_id, "count_lines")
    assert airflow.dag_run(IBM_COS_DAG, run_id)["state"] == "success", counts
    assert len(counts) == sum(-(-len(t) // 64) for t in texts.values()) > len(texts)
    assert sum(counts) == sum(t.count("\n") for t in texts.values())
    assert airflow.xcom(IBM_COS_DAG, run_id, "copy_upper") == [len(texts[k]) for k in sorted(texts)]
    for key, text in texts.items():
        assert (
            client.get_object(Bucket=cos_bucket, Key=f"written/{key}")["Body"].read() == text.upper().encode()
        )
    log = airflow.task_log(IBM_COS_DAG, run_id, "count_lines")
    assert "Pausing task as DEFERRED" in log
    assert cos_gateway.count("rejected") == 0 and cos_gateway.count("hmac") == 0
    assert cos_gateway.count("bearer") > 0 and cos_gateway.bearer_tokens <= set(cos_gateway.iam.issued)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=cos_bucket, Prefix="lithops.jobs/")
    assert not [o["Key"] for p in pages for o in p.get("Contents", []) if o["Key"].endswith("status.json")]
