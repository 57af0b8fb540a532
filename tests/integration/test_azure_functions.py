"""Lithops' ``azure_functions`` backend end to end on local stand-ins, and no worker slot
held at any job size on it (pywren_deferrable.dispatch.azure_functions).

Everything is Azure: Azurite serves the storage account's blobs (Lithops' own
``azure_storage`` backend: the job's data, statuses, results, the dispatch plan) and
queues (the function app's input and output queues), reached at Lithops' hard-coded
``https://<account>.{blob,queue}.core.windows.net`` through the test proxy with a test
CA (tests/storage_servers.py); the Functions host's stand-in (tests/azure_functions_fake)
runs each queue message through Lithops' real ``main_queue`` entry point in a process of
its own. Lithops' real FaaS invoker and worker code run; its deployment (``az`` CLI) does
not: each test's account is presented with the runtime deployed (``FakeAzureFunctions.deploy``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from azure_functions_fake import FakeAzureFunctions
from faas_checks import max_overlap
from payloads.functions import add, sleep_then
from storage_servers import AzuriteServer

from pywren_deferrable import PyWrenMapOperator
from pywren_deferrable.config import build_config
from pywren_deferrable.dispatch.plan import Cursor, DispatchPlan
from pywren_deferrable.embedded import run_dag_test
from pywren_deferrable.job import JobRef
from pywren_deferrable.triggers.job import PyWrenJobTrigger

pytestmark = pytest.mark.integration

MAX_WORKERS = 3
AZURE_DAGS = str(Path(__file__).with_name("azure_dags"))


class Platform:
    """One test's Azure account: Azurite (blobs + queues), the Functions host, the container."""

    def __init__(
        self, azurite: AzuriteServer, host: FakeAzureFunctions, container: str, extra: dict[str, Any]
    ):
        self.azurite, self.host, self.container, self.extra = azurite, host, container, extra

    def set_connection(self, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any] | None = None) -> None:
        conn = {"conn_type": "lithops", "extra": extra or self.extra}
        monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(conn))

    def calls_invoked(self, job_id: str = "M000") -> list[str]:
        """The call ids of ``job_id`` the function ran (one entry per run: a retried message twice)."""
        return [c for i in self.host.invocations_of(job_id) for c in i.call_ids]

    def messages_sent(self, job_id: str = "M000") -> list[str]:
        """The call ids of ``job_id`` by queue message (a message run twice counts once)."""
        seen: dict[str, list[str]] = {}
        for invocation in self.host.invocations_of(job_id):
            seen.setdefault(invocation.message_id, invocation.call_ids)
        return [c for calls in seen.values() for c in calls]

    def blobs(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient(self.azurite.account_url, credential=self.azurite.key)
        return service.get_container_client(self.container)

    def get(self, key: str) -> bytes:
        return bytes(self.blobs().download_blob(key).readall())

    def statuses(self, job: JobRef, job_id: str = "M000") -> list[dict[str, Any]]:
        return [
            json.loads(self.get(job.status_key(job_id, f"{i:05d}"))) for i in range(job.total_calls[job_id])
        ]


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Platform]:
    import lithops.constants
    import lithops.storage.storage as storage

    cache = tmp_path / "lithops-cache"  # no runtime metadata from another test's account
    cache.mkdir()
    for module in (lithops.constants, storage):
        monkeypatch.setattr(module, "CACHE_DIR", str(cache))
    azurite = AzuriteServer(queue=True).start()
    host = None
    try:
        for name, value in azurite.proxy_env().items():
            monkeypatch.setenv(name, value)
        container = f"jobs-{uuid.uuid4().hex[:10]}"
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient(azurite.account_url, credential=azurite.key).create_container(container)
        extra: dict[str, Any] = {
            "lithops": {"backend": "azure_functions", "storage": "azure_storage"},
            "azure_storage": {
                "storage_account_name": azurite.account,
                "storage_account_key": azurite.key,
                "storage_bucket": container,
            },
            "azure_functions": {
                "resource_group": "rg-test",
                "region": "local",
                "max_workers": MAX_WORKERS,
                "runtime_timeout": 120,
            },
        }
        host = FakeAzureFunctions(azurite, workdir=str(tmp_path), env=azurite.proxy_env()).start()
        platform = Platform(azurite, host, container, extra)
        platform.set_connection(monkeypatch)
        yield platform
    finally:
        if host is not None:
            host.stop()
        azurite.stop()


@pytest.fixture
def deployed(platform: Platform) -> Platform:
    """The account with Lithops' runtime deployed (metadata from its real entry point)."""
    meta = platform.host.deploy(build_config(platform.extra))
    assert "preinstalls" in meta
    return platform


class FakeTI:
    """What the operators read of a task instance."""

    def __init__(self, run_id: str | None = None, try_number: int = 1) -> None:
        self.dag_id, self.task_id, self.map_index, self.try_number = "azure", "t", -1, try_number
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"

    def xcom_pull(self, task_ids: str) -> Any:
        raise KeyError(task_ids)


def defer(op: PyWrenMapOperator, ti: FakeTI | None = None) -> tuple[PyWrenJobTrigger, float]:
    """Run ``op`` until it defers; return its trigger and when it deferred."""
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti or FakeTI()})
    trigger = deferred.value.trigger
    assert isinstance(trigger, PyWrenJobTrigger)
    return trigger, time.time()


def sleepy_map(calls: int, seconds: float) -> PyWrenMapOperator:
    return PyWrenMapOperator(
        task_id="t",
        map_function=sleep_then,
        map_iterdata=[(i, seconds) for i in range(calls)],
        job_timeout=400,
        poll_interval=1,
    )


# --- no worker slot held: the trigger sends the calls beyond max_workers ----------------------


async def test_the_trigger_dispatches_beyond_max_workers(deployed: Platform) -> None:
    calls = 3 * MAX_WORKERS
    op = sleepy_map(calls, 2.0)
    trigger, deferred_at = defer(op)
    job = trigger.job

    # Deferred right after the first wave: only max_workers messages were sent.
    assert job.dispatch == ("M000",)
    plan_raw = deployed.get(job.dispatch_plan_key("M000"))
    plan = DispatchPlan.from_json(plan_raw)
    first_wave = [f"{i:05d}" for i in range(MAX_WORKERS)]
    assert [c for chunk in plan.direct for c in chunk] == first_wave
    assert set(deployed.messages_sent()) <= set(first_wave)  # the host may not have them all yet
    assert plan.backend == "azure_functions"
    assert plan.max_workers == MAX_WORKERS and len(plan.pending) == calls - MAX_WORKERS
    assert plan.target["queue"].endswith("-in-trigger")
    # No secret in the plan, nor in the trigger kwargs.
    kwargs = json.dumps(trigger.serialize()[1])
    assert deployed.azurite.key not in plan_raw.decode()
    assert deployed.azurite.key not in kwargs

    event = await trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert op.execute_complete({"ti": FakeTI()}, dict(event.payload)) == list(range(calls))

    # Every call ran exactly once, each from a message of its own.
    deployed.host.wait_idle()
    assert sorted(deployed.calls_invoked()) == [f"{i:05d}" for i in range(calls)]
    assert all(i.status == "succeeded" for i in deployed.host.invocations_of("M000"))
    statuses = deployed.statuses(job)
    intervals = [(s["worker_start_tstamp"], s["worker_end_tstamp"]) for s in statuses]
    assert max_overlap(intervals) <= MAX_WORKERS, intervals
    # The task was gone before the calls beyond the first wave started.
    later = [s["worker_start_tstamp"] for s in statuses if s["call_id"] not in first_wave]
    assert deferred_at < min(later)
    assert Cursor.from_json(deployed.get(job.dispatch_cursor_key("M000"))).dispatched == len(plan.pending)


def test_map_and_map_reduce_through_dag_test(
    deployed: Platform, airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A map and a map-reduce of 3x max_workers calls through ``dag.test()``: both defer
    with a dispatch plan, every call runs once, at most max_workers at once per job."""
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "azure-dags", "classpath": local, "kwargs": {"path": AZURE_DAGS}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))

    state, results = run_dag_test(AZURE_DAGS, "azure_dispatch")

    assert state == "success", results
    assert results["map"] == list(range(9))
    assert results["map_reduce"] == sum(range(9))
    # Each task's map job left 6 calls to the trigger, in a plan under its own prefix.
    blobs = deployed.blobs()
    plans = [b.name for b in blobs.list_blobs() if b.name.endswith("/plan.json")]
    map_plans = [DispatchPlan.from_json(deployed.get(p)) for p in plans if "-M000/" in p]
    assert len(map_plans) == 2, plans
    assert all(len(p.pending) == 9 - MAX_WORKERS for p in map_plans)
    # The map-reduce's reducer found no free worker either: the trigger sent it too.
    assert len([p for p in plans if "-R000/" in p]) == 1, plans
    # Every map call ran once; per job, at most max_workers ran at once by their statuses.
    maps = [i for i in deployed.host.invocations if i.params.get("job_id") == "M000"]
    by_executor: dict[str, list[str]] = {}
    for invocation in maps:
        by_executor.setdefault(invocation.params["executor_id"], []).extend(invocation.call_ids)
    assert len(by_executor) == 2
    assert all(sorted(c) == [f"{i:05d}" for i in range(9)] for c in by_executor.values())
    spans: dict[str, list[tuple[float, float]]] = {}
    for blob in blobs.list_blobs():
        if blob.name.endswith("/status.json"):
            status = json.loads(deployed.get(blob.name))
            spans.setdefault(f"{status['executor_id']}/{status['job_id']}", []).append(
                (status["worker_start_tstamp"], status["worker_end_tstamp"])
            )
    assert sum(len(s) for s in spans.values()) == 9 + 9 + 1
    assert all(max_overlap(s) <= MAX_WORKERS for s in spans.values()), spans


TRIGGER_SCRIPT = """
import asyncio, json, sys
from pywren_deferrable.triggers.job import PyWrenJobTrigger
kwargs = json.loads(sys.stdin.read())
event = asyncio.run(PyWrenJobTrigger(**kwargs).wait_for_event())
print(json.dumps(event.payload["status"]))
"""


async def test_a_trigger_killed_mid_dispatch_loses_no_call(deployed: Platform) -> None:
    calls = 4 * MAX_WORKERS
    op = sleepy_map(calls, 2.0)
    ti = FakeTI()
    trigger, _ = defer(op, ti)
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
    while len(deployed.messages_sent()) <= MAX_WORKERS + 1 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    sent_by_first = len(deployed.messages_sent())
    assert MAX_WORKERS < sent_by_first < calls

    # The task's retry reattaches to the job with its plan; its trigger finishes the dispatch.
    retry_op = sleepy_map(calls, 2.0)
    retry_trigger, _ = defer(retry_op, FakeTI(ti.run_id, try_number=2))
    assert retry_trigger.job == job
    event = await retry_trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert retry_op.execute_complete({"ti": FakeTI()}, dict(event.payload)) == list(range(calls))

    sent = deployed.messages_sent()
    assert sorted(set(sent)) == [f"{i:05d}" for i in range(calls)]  # none lost
    # At-least-once with bounded duplicates: at most one batch (max_workers chunks).
    assert len(sent) - calls <= MAX_WORKERS
    assert len({i.params["executor_id"] for i in deployed.host.invocations_of("M000")}) == 1


# --- faults ------------------------------------------------------------------------------------


def test_wrong_account_key_fails_clearly(deployed: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong storage account key fails the task at submit with Azure's answer, naming no
    secret, before any call."""
    wrong = json.loads(json.dumps(deployed.extra))
    bad_key = base64.b64encode(secrets.token_bytes(64)).decode()  # well-formed, not the account's
    wrong["azure_storage"]["storage_account_key"] = bad_key
    deployed.set_connection(monkeypatch, wrong)
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2], deferrable=False)
    with pytest.raises(Exception, match=r"refused the Connection's credentials \(403 \w+\)") as failure:
        op.execute({"ti": FakeTI()})
    assert bad_key not in str(failure.value)
    assert deployed.host.invocations_of("M000") == []


def test_function_not_deployed_fails_clearly(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """No runtime deployed in the account: Lithops deploys it with the Azure CLI, which is
    not here; the task fails saying so, before any call. (A custom runtime name: for the
    default one Lithops would first pip-install its requirements to build it.)"""
    extra = json.loads(json.dumps(platform.extra))
    extra["azure_functions"]["runtime"] = "custom-runtime"
    platform.set_connection(monkeypatch, extra)
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1, 2], deferrable=False)
    with pytest.raises(Exception, match=r"Azure CLI \(az\) command not found"):
        op.execute({"ti": FakeTI()})
    assert platform.host.invocations == []


async def test_input_queue_deleted_after_deferral_fails_the_dispatch_clearly(deployed: Platform) -> None:
    """The function app is deleted (its input queue with it, as Lithops' delete_runtime
    does) after the task deferred: the trigger's dispatch is refused and the task fails
    naming the job and the missing queue, not a hang."""
    op = sleepy_map(3 * MAX_WORKERS, 2.0)
    trigger, _ = defer(op)
    plan = DispatchPlan.from_json(deployed.get(trigger.job.dispatch_plan_key("M000")))
    # The app goes once its first wave runs: deleted earlier, the queue takes those
    # messages with it and the calls never start (only Lithops' start timeout ends that).
    deadline = time.monotonic() + 60
    while len(deployed.host.invocations_of("M000")) < MAX_WORKERS:
        assert time.monotonic() < deadline, "the first wave never started"
        await asyncio.sleep(0.05)
    deployed.host.queue_client(plan.target["queue"]).delete_queue()
    event = await trigger.wait_for_event()
    assert event.payload["status"] == "error", event.payload
    message = json.dumps(event.payload)
    assert "M000" in message and "input queue does not exist" in message
    assert deployed.azurite.key not in message


async def test_queue_service_unreachable_briefly_mid_dispatch(deployed: Platform) -> None:
    """The queue endpoint refuses connections for 8 s while the trigger has calls to send
    (storage stays up): the dispatch is retried, every call runs exactly once."""
    calls = 3 * MAX_WORKERS
    op = sleepy_map(calls, 2.0)
    trigger, _ = defer(op)
    deployed.azurite.unreachable_for("queue", 8.0)
    blocked_until = time.time() + 8.0
    event = await trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert op.execute_complete({"ti": FakeTI()}, dict(event.payload)) == list(range(calls))
    assert sorted(deployed.messages_sent()) == [f"{i:05d}" for i in range(calls)]
    # The calls beyond the first wave went out once the queue was reachable again.
    later = [i.start for i in deployed.host.invocations_of("M000")][MAX_WORKERS:]
    assert min(later) >= blocked_until - 0.5


def test_invocation_killed_at_the_function_timeout_is_retried_then_poisoned(deployed: Platform) -> None:
    """The call outlives the function timeout (host.json's functionTimeout): the host kills
    the invocation, the message comes back after the visibility timeout and is run again,
    then, past maxDequeueCount, goes to the poison queue. The call never wrote its status:
    the task fails naming it, not a hang."""
    host = deployed.host
    host.function_timeout, host.visibility_timeout, host.max_dequeue_count = 4.0, 1.0, 2
    op = PyWrenMapOperator(
        task_id="t", map_function=sleep_then, map_iterdata=[(7, 60)], timeout=10, deferrable=False
    )
    with pytest.raises(AirflowException, match=r"(?s)M000/00000.*wrote no status"):
        op.execute({"ti": FakeTI()})
    app = next(iter(host.apps.values()))
    deadline = time.monotonic() + 60
    while not app.poisoned and time.monotonic() < deadline:  # the task may give up first
        time.sleep(0.2)
    runs = host.invocations_of("M000")
    assert [r.status for r in runs] == ["timeout", "timeout"]
    assert [r.dequeue_count for r in runs] == [1, 2]
    assert len({r.message_id for r in runs}) == 1
    assert app.poisoned == [runs[0].message_id]
    poison = host.queue_client(f"{app.in_queue}-poison").peek_messages()
    assert len(poison) == 1


# --- the trigger's invoker, message by message -------------------------------------------------


def _invoker_target(platform: Platform, queue: str) -> dict[str, Any]:
    return {
        "account_url": platform.azurite.queue_account_url,
        "account_name": platform.azurite.account,
        "queue": queue,
        "function": "lithops-worker-x",
        "auth": {"kind": "shared_key", "config_path": ["azure_functions", "storage_account_key"]},
    }


@pytest.fixture
def queue(platform: Platform) -> str:
    name = f"lithops-worker-{uuid.uuid4().hex[:12]}-in-trigger"
    platform.host.queue_client(name).create_queue()
    return name


async def test_invoker_sends_the_message_lithops_sends(platform: Platform, queue: str) -> None:
    from lithops.utils import b64str_to_dict

    from pywren_deferrable.dispatch.azure_functions import AzureQueueInvoker

    payload = {"job_id": "M000", "call_ids": ["00003"], "config": {"lithops": {"backend": "azure_functions"}}}
    config = {"azure_functions": {"storage_account_key": platform.azurite.key}}
    invoker = AzureQueueInvoker(_invoker_target(platform, queue), config)
    try:
        assert platform.azurite.key not in repr(invoker)
        message_id = await invoker.invoke(payload)
    finally:
        await invoker.close()
    [message] = platform.host.queue_client(queue).receive_messages(max_messages=1)
    assert message.id == message_id
    assert b64str_to_dict(message.content) == payload  # Lithops' own decoding


async def test_invoker_refuses_on_a_wrong_key_and_a_missing_queue(platform: Platform, queue: str) -> None:
    from pywren_deferrable.dispatch.azure_functions import AzureQueueInvoker
    from pywren_deferrable.dispatch.errors import DispatchRefused

    wrong = base64.b64encode(secrets.token_bytes(64)).decode()
    invoker = AzureQueueInvoker(
        _invoker_target(platform, queue), {"azure_functions": {"storage_account_key": wrong}}
    )
    try:
        with pytest.raises(
            DispatchRefused, match=r"403 \w+ \(the Connection's storage account key was refused\)"
        ) as refused:
            await invoker.invoke({"job_id": "M000"})
    finally:
        await invoker.close()
    assert wrong not in str(refused.value)
    good = {"azure_functions": {"storage_account_key": platform.azurite.key}}
    invoker = AzureQueueInvoker(_invoker_target(platform, "lithops-worker-gone-in-trigger"), good)
    try:
        with pytest.raises(
            DispatchRefused, match=r"404 QueueNotFound, the function's input queue does not exist"
        ):
            await invoker.invoke({"job_id": "M000"})
    finally:
        await invoker.close()
    with pytest.raises(DispatchRefused, match=r"no azure_functions.storage_account_key"):
        AzureQueueInvoker(_invoker_target(platform, queue), {"azure_functions": {}})


async def test_invoker_reports_an_unreachable_queue_service_as_unavailable(
    platform: Platform, queue: str
) -> None:
    from pywren_deferrable.dispatch.azure_functions import MAX_ATTEMPTS, AzureQueueInvoker
    from pywren_deferrable.dispatch.errors import DispatchUnavailable

    config = {"azure_functions": {"storage_account_key": platform.azurite.key}}
    invoker = AzureQueueInvoker(_invoker_target(platform, queue), config)
    platform.azurite.unreachable_for("queue", 30.0)
    try:
        with pytest.raises(DispatchUnavailable, match=rf"\({MAX_ATTEMPTS} attempts\)"):
            await invoker.invoke({"job_id": "M000"})
    finally:
        await invoker.close()
    platform.azurite.unreachable_for("queue", 0.0)
    assert platform.host.queue_client(queue).peek_messages() == []


async def test_blob_service_unreachable_briefly_while_the_trigger_polls(deployed: Platform) -> None:
    """Azure Blob (the job's storage) refuses connections for 8 s while the job runs: the
    trigger's polls fail and are retried (a storage outage up to ``max_outage``), the calls
    running meanwhile finish once it is back, and the job completes."""
    calls = 2 * MAX_WORKERS
    op = sleepy_map(calls, 2.0)
    trigger, _ = defer(op)
    deployed.azurite.unreachable_for("blob", 8.0)
    event = await trigger.wait_for_event()
    assert event.payload["status"] == "success", event.payload
    assert op.execute_complete({"ti": FakeTI()}, dict(event.payload)) == list(range(calls))
    assert sorted(set(deployed.messages_sent())) == [f"{i:05d}" for i in range(calls)]
