"""Row 7: worker slot-seconds of a FaaS job of 10 x ``max_workers`` calls, this project vs
today's in-process queue, on the OpenWhisk-API stand-in (tests/openwhisk_fake; 7a-7c), on
the AWS Lambda stand-in (tests/lambda_fake, Lithops' ``aws_lambda`` backend; 7d) and on the
Azure Functions stand-in (tests/azure_functions_fake, Azurite; 7e).

Each flow runs the real ``PyWrenMapOperator`` on Lithops' ``openwhisk`` backend (every
activation a process running Lithops' action entry point and worker): ``execute`` until it
defers, the trigger (not a worker slot) until its event, then ``execute_complete``. The
worker slot-seconds are the time spent in ``execute`` and ``execute_complete`` (the task
processes' start-up, the same for both, is row 1's business).

* this project: the calls beyond ``max_workers`` are left to the trigger
  (:mod:`pywren_deferrable.dispatch`);
* baseline: the same operator with that off, i.e. the in-process queue
  (``wait_until_dispatched``): the task waits until Lithops' invoker has fed every chunk.

The two large jobs run side by side, at the same time, on the same stand-in (7a); then 10x
and 1x jobs of this project, alternately, three of each (medians), for the goal: a 10x job
costs the task no more worker slot-seconds than a 1x job + 2 s (7b). The stand-in's API
server runs in this process and unpacks each activation's code zip in its event loop, so
how long the first wave takes to be accepted varies from run to run (noted per flow).

7d: the same side-by-side pair as 7a on ``aws_lambda``, after 7a-c (the Connection then
points at the Lambda stand-in: moto's control plane, every invocation a process running
Lithops' real ``entry_point.lambda_handler``; the trigger invokes through aiobotocore).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.common import ROOT, BenchResult, Context, Row, unique_bucket

NAME = "dispatch"
GOAL_EXTRA = 2.0
REPEATS = 3
# Time spent waiting for the first wave's invocations to be accepted, per thread.
_first_wave: dict[int, float] = {}


@dataclass
class Flow:
    label: str
    calls: int
    execute: float = 0.0
    resume: float = 0.0
    wall: float = 0.0
    results: Any = None
    max_running: int = 0
    max_activations: int = 0
    first_wave: float = 0.0

    @property
    def slot_seconds(self) -> float:
        return self.execute + self.resume

    @property
    def ratio(self) -> float:
        return self.slot_seconds / self.wall


class _TI:
    def __init__(self) -> None:
        self.dag_id, self.task_id, self.map_index, self.try_number = "bench_dispatch", "t", -1, 1
        self.run_id = f"run-{uuid.uuid4().hex[:8]}"


def _operator(calls: int, seconds: float, *, dispatch: bool) -> Any:
    from benchmarks.payloads import sleep_then
    from pywren_deferrable import PyWrenMapOperator
    from pywren_deferrable.submit import submit

    class Baseline(PyWrenMapOperator):  # today's path: the task feeds the queue itself
        def submit_spec(self, context: Any, spec: Any, deadline: float | None) -> Any:
            return submit(spec, deadline=deadline, name="baseline", dispatch=False)

    cls = PyWrenMapOperator if dispatch else Baseline
    return cls(
        task_id=f"t{uuid.uuid4().hex[:6]}",
        map_function=sleep_then,
        map_iterdata=[(i, seconds) for i in range(calls)],
        job_timeout=1800,
        poll_interval=2,
    )


def _peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t frees before a start at t)."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def _calls_at_once(job: Any, endpoint: str) -> int:
    """The most calls of the job running at once, by their own ``worker_start_tstamp`` /
    ``worker_end_tstamp`` in status.json (as plain Lithops keeps them)."""
    import boto3

    from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=EMBEDDED_ACCESS_KEY,
        aws_secret_access_key=EMBEDDED_SECRET_KEY,
        region_name="us-east-1",
    )
    intervals = []
    for index in range(job.total_calls["M000"]):
        body = client.get_object(Bucket=job.storage.bucket, Key=job.status_key("M000", f"{index:05d}"))[
            "Body"
        ]
        status = json.loads(body.read())
        intervals.append((status["worker_start_tstamp"], status["worker_end_tstamp"]))
    return _peak(intervals)


def _activations_at_once(fake: Any, executor_id: str) -> int:
    """The same by the stand-in's activation (or invocation) records: from acceptance to the
    process's exit, which includes the activation's start-up and teardown around the call."""
    records = fake.activations if hasattr(fake, "activations") else fake.invocations
    intervals = [
        (a.start, a.end)
        for a in list(records.values())
        if a.params.get("executor_id") == executor_id and a.end
    ]
    return _peak(intervals)


def _run_flow(
    fake: Any,
    label: str,
    calls: int,
    seconds: float,
    *,
    dispatch: bool,
    calls_at_once: Callable[[Any], int] | None = None,
    activations_at_once: Callable[[Any, str], int] = _activations_at_once,
) -> Flow:
    from airflow.sdk.exceptions import TaskDeferred

    flow = Flow(label, calls)
    op = _operator(calls, seconds, dispatch=dispatch)
    _first_wave.pop(threading.get_ident(), None)
    started = time.perf_counter()
    try:
        op.execute({"ti": _TI()})
    except TaskDeferred as deferred:
        trigger = deferred.trigger
    else:
        raise AssertionError(f"{label}: the operator did not defer")
    flow.execute = time.perf_counter() - started
    flow.first_wave = _first_wave.pop(threading.get_ident(), 0.0)
    event = asyncio.run(trigger.wait_for_event())
    resumed = time.perf_counter()
    flow.results = op.execute_complete({"ti": _TI()}, dict(event.payload))
    flow.resume = time.perf_counter() - resumed
    flow.wall = time.perf_counter() - started
    if calls_at_once is None:
        flow.max_running = _calls_at_once(trigger.job, trigger.job.storage.endpoint)
    else:
        flow.max_running = calls_at_once(trigger.job)
    flow.max_activations = activations_at_once(fake, trigger.job.executor_id)
    if flow.results != list(range(calls)):
        raise AssertionError(f"{label} returned {flow.results!r:.200}")
    return flow


def _median_flow(flows: list[Flow]) -> Flow:
    """The flow of median worker slot-seconds."""
    return sorted(flows, key=lambda f: f.slot_seconds)[len(flows) // 2]


def _time_first_wave() -> None:
    """Record how long each submission waits for its first wave to be accepted."""
    from pywren_deferrable.dispatch.capture import PendingCapture

    original = PendingCapture.wait_first_wave
    if getattr(original, "timed", False):
        return

    def timed(self: Any) -> None:
        started = time.perf_counter()
        try:
            original(self)
        finally:
            _first_wave[threading.get_ident()] = time.perf_counter() - started

    timed.timed = True  # type: ignore[attr-defined]
    PendingCapture.wait_first_wave = timed  # type: ignore[method-assign]


@contextlib.contextmanager
def _one_ast_parse_at_a_time() -> Iterator[None]:
    """CPython 3.11.7's ``ast.parse`` is not thread-safe (gh-106905: a shared recursion
    depth, ``SystemError: AST constructor recursion depth mismatch``); Lithops' module scan
    calls it at submit. Airflow runs one task per process, the side-by-side flows do not:
    one parse at a time while they run (the scan is a small part of a submit)."""
    original = ast.parse
    lock = threading.Lock()

    def parse(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(*args, **kwargs)

    ast.parse = parse  # type: ignore[assignment]
    try:
        yield
    finally:
        ast.parse = original  # type: ignore[assignment]


def _side_by_side(first: Any, second: Any) -> tuple[Flow, Flow]:
    """Run two flows at the same time (the second in a thread)."""
    box: dict[str, Any] = {}

    def other() -> None:
        try:
            box["flow"] = second()
        except Exception as err:
            box["error"] = err

    with _one_ast_parse_at_a_time():
        thread = threading.Thread(target=other)
        thread.start()
        try:
            flow = first()
        finally:
            thread.join()
    if "error" in box:
        raise box["error"]
    return flow, box["flow"]


def _platform(ctx: Context, max_workers: int) -> Any:
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from openwhisk_fake import FakeOpenWhisk

    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    api_key = f"{uuid.uuid4()}:{uuid.uuid4().hex}"
    workdir = ctx.scratch / "openwhisk"
    workdir.mkdir(exist_ok=True)
    fake = FakeOpenWhisk(api_keys={api_key: namespace}, workdir=str(workdir), concurrency_limit=1000).start()
    ctx.on_close(fake.stop)
    moto = ctx.moto()
    bucket = moto.create_bucket(unique_bucket("dispatch"))
    from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY

    extra = {
        "lithops": {"backend": "openwhisk", "storage": "minio", "log_level": "WARNING"},
        "openwhisk": {
            "endpoint": fake.endpoint,
            "namespace": namespace,
            "api_key": api_key,
            "max_workers": max_workers,
            "runtime_timeout": 300,
        },
        "minio": {"endpoint": moto.endpoint, "storage_bucket": bucket},
    }
    conn = {
        "conn_type": "lithops",
        "login": EMBEDDED_ACCESS_KEY,
        "password": EMBEDDED_SECRET_KEY,
        "extra": extra,
    }
    os.environ["AIRFLOW_CONN_LITHOPS_DEFAULT"] = json.dumps(conn)
    os.environ["REQUESTS_CA_BUNDLE"] = fake.ca_bundle
    return fake


def _lambda_platform(ctx: Context, max_workers: int) -> Any:
    """The AWS Lambda stand-in, this process's AWS settings pointed at it (as the tests do:
    tests/lambda_fake/platform.py), and the Connection for aws_lambda."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import lithops.constants
    import lithops.storage.storage as storage
    from lambda_fake import routing
    from lambda_fake.server import DEFAULT_REGION, FakeLambda, prepare_account

    from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the stand-in's request log
    # Lithops caches runtime metadata by function name, the same on every stand-in.
    cache = ctx.scratch / "lithops-cache-lambda"
    cache.mkdir(exist_ok=True)
    lithops.constants.CACHE_DIR = storage.CACHE_DIR = str(cache)  # type: ignore[attr-defined]
    storage.RUNTIME_META_CACHE.clear()
    access_key, secret_key = "AKIA" + uuid.uuid4().hex[:16].upper(), uuid.uuid4().hex
    workdir = ctx.scratch / "lambda"
    workdir.mkdir(exist_ok=True)
    fake = FakeLambda(
        credentials={access_key: secret_key}, workdir=str(workdir), concurrency_limit=1000
    ).start()
    ctx.on_close(fake.stop)
    ctx.on_close(routing.uninstall)
    os.environ.update(fake.client_env())
    routing.install(fake.routes(), fake.combined_ca_bundle)
    role = prepare_account(fake, access_key, secret_key)
    moto = ctx.moto()
    bucket = moto.create_bucket(unique_bucket("dispatch-lambda"))
    extra = {
        "lithops": {"backend": "aws_lambda", "storage": "minio", "log_level": "WARNING"},
        "aws": {"access_key_id": access_key, "secret_access_key": secret_key, "region": DEFAULT_REGION},
        "aws_lambda": {"execution_role": role, "max_workers": max_workers, "runtime_timeout": 300},
        "minio": {"endpoint": moto.endpoint, "storage_bucket": bucket},
    }
    conn = {
        "conn_type": "lithops",
        "login": EMBEDDED_ACCESS_KEY,
        "password": EMBEDDED_SECRET_KEY,
        "extra": extra,
    }
    os.environ["AIRFLOW_CONN_LITHOPS_DEFAULT"] = json.dumps(conn)
    return fake


def run(ctx: Context) -> BenchResult:
    result = run_openwhisk(ctx)
    azure = run_azure_functions(ctx)
    result.rows.extend(azure.rows)
    result.notes.extend(azure.notes)
    return result


def run_openwhisk(ctx: Context) -> BenchResult:
    from benchmarks.flows import quiet_trigger_logs

    quiet_trigger_logs()
    _time_first_wave()
    max_workers = 4 if ctx.quick else 10
    seconds = 5.0
    big = 10 * max_workers
    fake = _platform(ctx, max_workers)
    result = BenchResult(NAME)
    # Deploy the runtime first (a blocking "preinstalls" activation), so no flow pays it.
    _run_flow(fake, "warm-up", 1, 0.0, dispatch=True)

    # 7a: this project and the in-process queue, the same 10x job, side by side.
    project, queue = _side_by_side(
        lambda: _run_flow(fake, "project", big, seconds, dispatch=True),
        lambda: _run_flow(fake, "baseline", big, seconds, dispatch=False),
    )
    # 7b: 10x and 1x jobs of this project, alternately, one at a time (medians).
    tens: list[Flow] = []
    ones: list[Flow] = []
    for _ in range(1 if ctx.quick else REPEATS):
        tens.append(_run_flow(fake, "project-10x", big, seconds, dispatch=True))
        ones.append(_run_flow(fake, "project-1x", max_workers, seconds, dispatch=True))
    project_again = _median_flow(tens)
    small = _median_flow(ones)

    result.rows.append(
        Row(
            key="7a",
            what=(
                f"worker slot-s ÷ job wall, {big}-call map of {seconds:.0f} s calls, max_workers={max_workers} "
                "(openwhisk stand-in)"
            ),
            project=f"{project.ratio:.3f} ({project.slot_seconds:.1f} s / {project.wall:.1f} s)",
            baseline=f"{queue.ratio:.3f} ({queue.slot_seconds:.1f} s / {queue.wall:.1f} s)",
            ratio=project.slot_seconds / queue.slot_seconds,
            goal="",
            met=None,
            note="baseline: today's in-process queue (wait_until_dispatched); the two jobs ran side by side",
        )
    )
    result.rows.append(
        Row(
            key="7b",
            what=(
                f"worker slot-s, {big}-call job vs {max_workers}-call job (this project; median of "
                f"{len(tens)}, alternating)"
            ),
            project=f"{project_again.slot_seconds:.1f} s",
            baseline=f"{small.slot_seconds:.1f} s ({max_workers}-call job, this project)",
            ratio=project_again.slot_seconds / small.slot_seconds,
            goal=f"≤ {max_workers}-call job + {GOAL_EXTRA:.0f} s",
            met=project_again.slot_seconds <= small.slot_seconds + GOAL_EXTRA,
            note="; ".join(
                ([f"--quick: max_workers={max_workers}"] if ctx.quick else [])
                + [
                    f"at most {max(f.max_running for f in tens)} calls of a job ran at once by their "
                    f"status.json (max_workers {max_workers})",
                    "first-wave acceptance (the same max_workers invocations in both) is most of "
                    "execute(): see the notes",
                ]
            ),
        )
    )
    result.rows.append(
        Row(
            key="7c",
            what=f"most calls of the {big}-call job running at once, by their status.json start/end",
            project=str(project.max_running),
            baseline=str(queue.max_running),
            ratio=None,
            goal=f"≤ max_workers ({max_workers})",
            met=project.max_running <= max_workers,
            note="Lithops' own queue adds one token per async invoker (2) to the bucket",
        )
    )
    # 7d: the 7a pair on aws_lambda.
    lambda_fake = _lambda_platform(ctx, max_workers)
    _run_flow(lambda_fake, "aws_lambda warm-up", 1, 0.0, dispatch=True)
    on_lambda, lambda_queue = _side_by_side(
        lambda: _run_flow(lambda_fake, "aws_lambda project", big, seconds, dispatch=True),
        lambda: _run_flow(lambda_fake, "aws_lambda baseline", big, seconds, dispatch=False),
    )
    result.rows.append(
        Row(
            key="7d",
            what=(
                f"worker slot-s ÷ job wall, {big}-call map of {seconds:.0f} s calls, max_workers={max_workers} "
                "(aws_lambda stand-in)"
            ),
            project=f"{on_lambda.ratio:.3f} ({on_lambda.slot_seconds:.1f} s / {on_lambda.wall:.1f} s)",
            baseline=f"{lambda_queue.ratio:.3f} ({lambda_queue.slot_seconds:.1f} s / {lambda_queue.wall:.1f} s)",
            ratio=on_lambda.slot_seconds / lambda_queue.slot_seconds,
            goal=f"≤ max_workers ({max_workers}) at once",
            met=on_lambda.max_running <= max_workers,
            note=(
                "baseline: Lithops' in-process queue; side by side; at most "
                f"{on_lambda.max_running} (project) / {lambda_queue.max_running} (baseline) calls at once "
                "by their status.json"
            ),
        )
    )
    for flow in (project, queue, *tens, *ones, on_lambda, lambda_queue):
        result.notes.append(
            f"{flow.label}: {flow.calls} calls, execute() {flow.execute:.1f} s (of which waiting for the first "
            f"wave to be accepted {flow.first_wave:.1f} s), execute_complete() "
            f"{flow.resume:.1f} s, job wall {flow.wall:.1f} s, at most {flow.max_running} calls at once by "
            f"their status.json ({flow.max_activations} activations by the stand-in's records, which "
            "include each activation's process start-up and exit)"
        )
    for flow in (project, *tens, *ones, on_lambda):
        if flow.max_running > max_workers:
            raise AssertionError(f"{flow.label}: {flow.max_running} calls ran at once, over {max_workers=}")
    return result


# --- 7e: the same on azure_functions (tests/azure_functions_fake) -------------------------------


def _azure_platform(ctx: Context, max_workers: int) -> tuple[Any, Any]:
    """Azurite (blobs + queues, behind the test proxy) and the Functions host stand-in, the
    runtime deployed, the ``lithops_default`` Connection pointing at them."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from azure.storage.blob import BlobServiceClient
    from azure_functions_fake import FakeAzureFunctions
    from storage_servers import AzuriteServer

    from pywren_deferrable.config import build_config

    azurite = AzuriteServer(queue=True).start()
    ctx.on_close(azurite.stop)
    os.environ.update(azurite.proxy_env())  # NO_PROXY keeps 127.0.0.1 (moto) direct
    container = unique_bucket("dispatch-azure")
    BlobServiceClient(azurite.account_url, credential=azurite.key).create_container(container)
    workdir = ctx.scratch / "azure-functions"
    workdir.mkdir(exist_ok=True)
    host = FakeAzureFunctions(
        azurite, workdir=str(workdir), concurrency_limit=1000, env=azurite.proxy_env()
    ).start()
    ctx.on_close(host.stop)
    extra = {
        "lithops": {"backend": "azure_functions", "storage": "azure_storage", "log_level": "WARNING"},
        "azure_storage": {
            "storage_account_name": azurite.account,
            "storage_account_key": azurite.key,
            "storage_bucket": container,
        },
        "azure_functions": {
            "resource_group": "rg-bench",
            "region": "local",
            "max_workers": max_workers,
            "runtime_timeout": 300,
        },
    }
    host.deploy(build_config(extra))
    os.environ["AIRFLOW_CONN_LITHOPS_DEFAULT"] = json.dumps({"conn_type": "lithops", "extra": extra})
    return azurite, host


def _azure_calls_at_once(azurite: Any) -> Callable[[Any], int]:
    def calls_at_once(job: Any) -> int:
        from azure.storage.blob import BlobServiceClient

        container = BlobServiceClient(azurite.account_url, credential=azurite.key).get_container_client(
            job.storage.bucket
        )
        intervals = []
        for index in range(job.total_calls["M000"]):
            status = json.loads(container.download_blob(job.status_key("M000", f"{index:05d}")).readall())
            intervals.append((status["worker_start_tstamp"], status["worker_end_tstamp"]))
        return _peak(intervals)

    return calls_at_once


def _azure_invocations_at_once(host: Any, executor_id: str) -> int:
    """By the host's records: from receiving the message to the process's exit."""
    intervals = [
        (i.start, i.end)
        for i in list(host.invocations)
        if i.params.get("executor_id") == executor_id and i.end
    ]
    return _peak(intervals)


def run_azure_functions(ctx: Context) -> BenchResult:
    """Row 7e: 7a on Lithops' azure_functions backend (queue-triggered; the stand-in's host
    runs each message through Lithops' real entry point in a process of its own)."""
    from benchmarks.flows import quiet_trigger_logs

    quiet_trigger_logs()
    _time_first_wave()
    max_workers = 4 if ctx.quick else 10
    seconds = 5.0
    big = 10 * max_workers
    azurite, host = _azure_platform(ctx, max_workers)
    measure = {
        "calls_at_once": _azure_calls_at_once(azurite),
        "activations_at_once": _azure_invocations_at_once,
    }
    result = BenchResult(NAME)
    project, queue = _side_by_side(
        lambda: _run_flow(host, "azure-project", big, seconds, dispatch=True, **measure),
        lambda: _run_flow(host, "azure-baseline", big, seconds, dispatch=False, **measure),
    )
    result.rows.append(
        Row(
            key="7e",
            what=(
                f"worker slot-s ÷ job wall, {big}-call map of {seconds:.0f} s calls, max_workers={max_workers} "
                "(azure_functions stand-in: Azurite queues + blobs)"
            ),
            project=f"{project.ratio:.3f} ({project.slot_seconds:.1f} s / {project.wall:.1f} s)",
            baseline=f"{queue.ratio:.3f} ({queue.slot_seconds:.1f} s / {queue.wall:.1f} s)",
            ratio=project.slot_seconds / queue.slot_seconds,
            goal=f"most calls at once ≤ max_workers ({max_workers})",
            met=project.max_running <= max_workers,
            note=(
                f"baseline: today's in-process queue; side by side; most calls at once by status.json: "
                f"{project.max_running} (project), {queue.max_running} (baseline)"
                + (f"; --quick: max_workers={max_workers}" if ctx.quick else "")
            ),
        )
    )
    for flow in (project, queue):
        result.notes.append(
            f"{flow.label}: {flow.calls} calls, execute() {flow.execute:.1f} s (of which waiting for the first "
            f"wave to be accepted {flow.first_wave:.1f} s), execute_complete() {flow.resume:.1f} s, job wall "
            f"{flow.wall:.1f} s, at most {flow.max_running} calls at once by their status.json "
            f"({flow.max_activations} invocations by the host's records, which include each process's "
            "start-up and exit)"
        )
    if project.max_running > max_workers:
        raise AssertionError(f"azure-project: {project.max_running} calls ran at once, over {max_workers=}")
    return result
