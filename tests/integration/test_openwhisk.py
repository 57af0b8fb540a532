"""Lithops' FaaS path end to end: the ``openwhisk`` and ``ibm_cf`` (IAM) compute backends
against the OpenWhisk-API stand-in (tests/openwhisk_fake), storage on the local S3 endpoint.

Lithops' real FaaS invoker, runtime deployment (package, action from its code zip, the
"preinstalls" metadata call) and worker code (its action entry point, one process per
activation) all run. Nothing is cached across tests that a real cloud would not keep:
every test has its own stand-in, bucket, namespace and Lithops cache directory, so every
test deploys its runtime.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from openwhisk_fake import FakeOpenWhisk
from payloads.functions import add, sleep_then, total

from pywren_deferrable import PyWrenJobTrigger, PyWrenMapOperator, PyWrenMapReduceOperator
from pywren_deferrable.dispatch.plan import DispatchPlan
from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY, LocalS3Server, run_dag_test
from pywren_deferrable.job import JobRef, status_key

pytestmark = pytest.mark.integration

FAAS_DAGS = str(Path(__file__).with_name("faas_dags"))
BACKENDS = ("openwhisk", "ibm_cf")
MAX_WORKERS = 4


@dataclass
class Faas:
    """One test's FaaS platform: the stand-in, the backend the Connection names, its config."""

    fake: FakeOpenWhisk
    backend: str
    extra: dict[str, Any]
    api_key: str

    def set_connection(self, monkeypatch: pytest.MonkeyPatch, **backend_section: Any) -> None:
        extra = json.loads(json.dumps(self.extra))
        extra[self.backend].update(backend_section)
        conn = {
            "conn_type": "lithops",
            "login": EMBEDDED_ACCESS_KEY,
            "password": EMBEDDED_SECRET_KEY,
            "extra": extra,
        }
        monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(conn))

    def calls_invoked(self, job_id: str) -> list[str]:
        """The call ids of ``job_id`` that the platform accepted, in invocation order."""
        return [c for a in self.fake.invocations_of(job_id) for c in a.call_ids]


@pytest.fixture
def lithops_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private Lithops cache dir for the test (runtime metadata, the IAM token file, the
    IBM CF namespace file): Lithops keeps them under ~/.lithops/cache, which would let one
    test (or an earlier run's stand-in) leak a deployed runtime or a token into the next."""
    import lithops.constants
    import lithops.serverless.backends.ibm_cf.ibm_cf as ibm_cf
    import lithops.storage.storage as storage
    import lithops.util.ibm_token_manager as token_manager

    cache = tmp_path / "lithops-cache"
    cache.mkdir()
    for module in (lithops.constants, ibm_cf, storage, token_manager):
        monkeypatch.setattr(module, "CACHE_DIR", str(cache))
    monkeypatch.setattr(token_manager.IAMTokenManager, "TOKEN_FILE", str(cache / "ibm_iam" / "token"))
    return cache


@pytest.fixture(params=BACKENDS)
def faas(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: LocalS3Server,
    bucket: str,
    lithops_cache: Path,
    tmp_path: Path,
) -> Iterator[Faas]:
    """The stand-in, serving the backend of the test's parameter; the ``lithops_default``
    Connection points at it (compute) and at the local S3 endpoint (storage)."""
    backend = str(request.param)
    namespace = f"ns-{uuid.uuid4().hex[:10]}"
    if backend == "openwhisk":
        api_key = f"{uuid.uuid4()}:{uuid.uuid4().hex}"
        fake = FakeOpenWhisk(api_keys={api_key: namespace}, workdir=str(tmp_path))
    else:
        api_key = f"iam-{uuid.uuid4().hex}"
        fake = FakeOpenWhisk(iam_api_keys={api_key}, workdir=str(tmp_path))
    fake.start()
    # Lithops verifies TLS on every request but invocations: the stand-in's CA must reach it.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_bundle)
    # Lithops' ibm_cf token manager asks IAM at the SDK's default URL; point it here.
    from ibm_cloud_sdk_core.token_managers.iam_request_based_token_manager import (
        IAMRequestBasedTokenManager,
    )

    monkeypatch.setattr(IAMRequestBasedTokenManager, "DEFAULT_IAM_URL", fake.iam_endpoint)
    section: dict[str, Any] = {
        "endpoint": fake.endpoint,
        "namespace": namespace,
        "max_workers": MAX_WORKERS,
        "runtime_timeout": 60,
    }
    extra: dict[str, Any] = {
        "lithops": {"backend": backend, "storage": "minio"},
        backend: section,
        "minio": {"endpoint": s3_server.endpoint, "storage_bucket": bucket},
    }
    if backend == "openwhisk":
        section["api_key"] = api_key
    else:
        extra["ibm"] = {"iam_api_key": api_key, "resource_group_id": "test-resource-group"}
    platform = Faas(fake, backend, extra, api_key)
    platform.set_connection(monkeypatch)
    try:
        yield platform
    finally:
        fake.stop()


@pytest.fixture
def openwhisk(faas: Faas) -> Faas:
    return faas


class FakeTI:
    """Just what the operators read of a task instance (a fresh run id: no reattaching)."""

    def __init__(self) -> None:
        self.dag_id, self.task_id, self.map_index, self.try_number = "faas", "t", -1, 1
        self.run_id = f"run-{uuid.uuid4().hex[:8]}"

    def xcom_pull(self, task_ids: str) -> Any:
        raise KeyError(task_ids)


def run(op: Any) -> Any:
    return op.execute({"ti": FakeTI()})


def defer(op: Any) -> tuple[TaskDeferred, float]:
    """Run ``op`` until it defers (its submission is done by then); also return when."""
    with pytest.raises(TaskDeferred) as deferred:
        run(op)
    return deferred.value, time.time()


async def resume(op: Any, deferred: TaskDeferred) -> Any:
    """Run the trigger the operator deferred to, then resume the operator with its event."""
    event = await deferred.trigger.wait_for_event()
    return op.execute_complete({"ti": FakeTI()}, dict(event.payload))


def quick_job(faas: Faas) -> None:
    """A small job, which also deploys the runtime (and caches its metadata)."""
    assert run(PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2], deferrable=False)) == [
        1,
        2,
    ]
    assert len(faas.fake.actions) == 1


# --- end to end through dag.test() ----------------------------------------------------------


def test_every_operator_end_to_end(
    faas: Faas, s3_server: LocalS3Server, bucket: str, airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dag.test() runs DAGs of a configured bundle: add one for this test's DAG folder.
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "faas-dags", "classpath": local, "kwargs": {"path": FAAS_DAGS}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="lines/a.txt", Body=b"".join(b"line %d\n" % i for i in range(40)))
    client.put_object(Bucket=bucket, Key="lines/b.txt", Body=b"one\ntwo\n")

    state, results = run_dag_test(FAAS_DAGS, "faas_operators")

    assert state == "success", results
    assert results["call_async"] == 3
    assert results["map"] == [11, 12, 13]
    assert results["map_reduce"] == 6
    assert results["map_reduce_wait_local"] == 9
    assert results["sensor"] == [4, 5]
    assert results["bucket_map"] == [40, 2]
    fake = faas.fake
    finished = fake.settle()
    # Lithops deployed its runtime through the API: a package, an action from its zip,
    # and the blocking "preinstalls" call that reads the runtime's metadata.
    assert len(fake.packages) == 1 and len(fake.actions) == 1
    preinstalls = [a for a in finished if a.params.get("get_metadata")]
    assert len(preinstalls) == 1 and "preinstalls" in preinstalls[0].result
    calls = [a for a in finished if not a.params.get("get_metadata")]
    # One activation per call: 1 + 3 + (3 + 1) + (3 + 1) + 2 + 2; every one succeeded.
    assert len(calls) == 16
    assert all(a.status == "success" for a in finished), [a.logs[-2000:] for a in calls]
    if faas.backend == "ibm_cf":
        assert fake.iam_requests >= 1 and len(fake.iam_namespaces) == 1


# --- faults ----------------------------------------------------------------------------------


def test_wrong_api_key_fails_clearly(faas: Faas, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong key fails the task at submit with the platform's answer, before any call."""
    if faas.backend == "openwhisk":
        faas.set_connection(monkeypatch, api_key=f"{uuid.uuid4()}:wrong")
        expected = "authentication is invalid"
    else:
        faas.extra["ibm"]["iam_api_key"] = "iam-wrong-key"
        faas.set_connection(monkeypatch)
        expected = "Provided API key could not be found"
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2], deferrable=False)
    with pytest.raises(Exception, match=expected):
        run(op)
    assert faas.fake.activations == {}


@pytest.mark.parametrize("faas", ["openwhisk"], indirect=True)
def test_key_revoked_after_deployment_fails_clearly(faas: Faas, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime is deployed (its metadata cached), then the key stops working: every
    invocation gets 401. Lithops' openwhisk backend hands the 401 back as if it were an
    activation id; the task must fail naming it instead of deferring on calls never run."""
    quick_job(faas)
    faas.fake.api_keys = {f"{uuid.uuid4()}:other": "elsewhere"}
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2], deferrable=False)
    with pytest.raises(Exception, match=r"401") as failure:
        run(op)
    assert "M000" in str(failure.value)


def test_missing_action(faas: Faas) -> None:
    """The action is deleted behind Lithops' back (its runtime metadata still cached).
    ibm_cf: Lithops gets 404, deploys it again and the job runs. openwhisk: Lithops' backend
    does not redeploy; the task fails naming the 404 instead of losing the calls."""
    quick_job(faas)
    assert faas.fake.delete_action(next(iter(faas.fake.actions))[2]) == 1
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[3, 4], deferrable=False)
    if faas.backend == "ibm_cf":
        assert run(op) == [3, 4]
        assert len(faas.fake.actions) == 1  # deployed again
    else:
        with pytest.raises(Exception, match=r"404"):
            run(op)


@pytest.mark.parametrize("faas", ["openwhisk"], indirect=True)
async def test_throttling_is_retried_and_every_call_is_out_before_deferring(
    faas: Faas, s3_server: LocalS3Server, bucket: str
) -> None:
    """Above the platform's concurrency limit invocations get 429. A task that returns its
    JobRef at once (``wait_for_result=False``) returns only once Lithops' invoker has retried
    every call into acceptance. A task that defers leaves the throttled chunks of its first
    wave to the trigger (pywren_deferrable.dispatch): at deferral every call is accepted or
    in the job's dispatch plan, and each runs once."""
    every = ["00000", "00001", "00002", "00003"]
    faas.fake.concurrency_limit = 2
    returned = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(i, 2) for i in range(4)], wait_for_result=False
    )
    job = JobRef.from_dict(run(returned))
    assert faas.fake.throttled > 0 and job.dispatch == ()
    assert sorted(faas.calls_invoked("M000")) == every
    event = await PyWrenJobTrigger(job=job.to_dict(), poll_interval=1).wait_for_event()
    assert event.payload["status"] == "success", event.payload

    throttled_before = faas.fake.throttled
    invoked_before = len(faas.fake.invocations_of("M000"))
    op = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(i, 2) for i in range(4)], deferrable=True
    )
    deferred, _ = defer(op)
    assert faas.fake.throttled > throttled_before
    job = deferred.trigger.job  # type: ignore[attr-defined]
    assert job.dispatch == ("M000",)
    raw = s3_server.client().get_object(Bucket=bucket, Key=job.dispatch_plan_key("M000"))["Body"].read()
    left = [c for chunk in DispatchPlan.from_json(raw).pending for c in chunk.call_ids]

    def calls_of_this_job() -> list[str]:
        activations = faas.fake.invocations_of("M000")[invoked_before:]
        return [c for a in activations if a.params["executor_id"] == job.executor_id for c in a.call_ids]

    assert sorted(calls_of_this_job() + left) == every
    assert await resume(op, deferred) == [0, 1, 2, 3]
    assert sorted(calls_of_this_job()) == every  # none twice


@pytest.mark.parametrize("faas", ["openwhisk"], indirect=True)
def test_endpoint_down_for_20s_mid_job(faas: Faas) -> None:
    """The API endpoint goes down while the maps run and stays down when the reducer of
    ``reducer_wait_local`` is submitted: Lithops retries the invocation until the endpoint
    is back, and the job completes. ``job_timeout`` bounds the test if anything hangs."""
    outage = 20.0
    came_back: list[float] = []

    def take_down_when_maps_run() -> None:
        deadline = time.monotonic() + 120
        while len(faas.calls_invoked("M000")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        faas.fake.down_for(outage)
        came_back.append(time.time() + outage)

    watcher = threading.Thread(target=take_down_when_maps_run, daemon=True)
    watcher.start()
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=sleep_then,
        reduce_function=total,
        map_iterdata=[(1, 3), (2, 3)],
        reducer_wait_local=True,
        job_timeout=150,
        deferrable=False,
    )
    assert run(op) == 3
    watcher.join(5)
    maps = faas.fake.invocations_of("M000")
    reducers = [
        a for a in faas.fake.activations.values() if a not in maps and not a.params.get("get_metadata")
    ]
    # The maps ended during the outage, so the reducer was submitted while it lasted, and
    # Lithops' invoker got it through once the endpoint was back.
    assert max(a.end or 0.0 for a in maps) < came_back[0]
    assert len(reducers) == 1 and reducers[0].start >= came_back[0] - 0.5


@pytest.mark.parametrize("faas", ["openwhisk"], indirect=True)
def test_activation_killed_at_its_time_limit(faas: Faas) -> None:
    """The action's time limit (lowered by an admin, as ``wsk action update --timeout``
    does) is shorter than the call: the platform kills the activation, which writes no
    status. The task fails naming the call, not a hang."""
    quick_job(faas)
    earlier = set(faas.fake.activations)
    (ns, pkg, name), _ = next(iter(faas.fake.actions.items()))
    answer = requests.put(
        f"{faas.fake.endpoint}/api/v1/namespaces/{ns}/actions/{pkg}/{name}?overwrite=true",
        json={"limits": {"timeout": 8000}},
        auth=tuple(faas.api_key.split(":", 1)),  # type: ignore[arg-type]
        verify=faas.fake.ca_bundle,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    op = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(7, 60)], timeout=12, deferrable=False
    )
    with pytest.raises(AirflowException, match=r"(?s)M000/00000.*wrote no status"):
        run(op)
    killed = [a for a in faas.fake.invocations_of("M000") if a.activation_id not in earlier]
    assert len(killed) == 1 and killed[0].status == "developer error"
    assert "exceeded its time limits of 8000 milliseconds" in killed[0].result["error"]


# --- today's behaviour with more calls than max_workers (issue 12, item 4) --------------------


@pytest.mark.parametrize("faas", ["openwhisk"], indirect=True)
async def test_more_calls_than_max_workers_defer_after_the_first_wave(
    faas: Faas, monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server, bucket: str
) -> None:
    """The task defers once the first ``max_workers`` calls are accepted; the trigger
    invokes the rest as calls finish (see pywren_deferrable/dispatch/), and never runs
    more than ``max_workers`` at once by the calls' own start/end in their status. (Plain
    Lithops 3.8 feeds them from the submitting process and runs up to ``max_workers + 2``:
    its two async invoker loops each start with a token of their own.)"""
    max_workers, calls = 2, [f"{i:05d}" for i in range(6)]
    faas.set_connection(monkeypatch, max_workers=max_workers)
    op = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(i, 2) for i in range(6)], deferrable=True
    )
    deferred, deferred_at = defer(op)
    assert sorted(faas.calls_invoked("M000")) == calls[:max_workers]  # the first wave only
    assert await resume(op, deferred) == list(range(6))
    assert sorted(faas.calls_invoked("M000")) == calls  # the trigger invoked the rest
    # How many ran at once, by the calls' own start/end in their status (an activation's
    # process outlives its status by a moment: the platform's view is not the measure).
    executor_id = deferred.trigger.serialize()[1]["job"]["executor_id"]
    client = s3_server.client()
    spans = []
    for call in calls:
        body = client.get_object(Bucket=bucket, Key=status_key(executor_id, "M000", call))["Body"].read()
        status = json.loads(body)
        spans.append((status["worker_start_tstamp"], status["worker_end_tstamp"]))
    assert min(start for start, _ in spans[max_workers:]) >= deferred_at  # invoked after deferring
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert peak <= max_workers, spans
