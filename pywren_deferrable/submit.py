"""Hand a job to Lithops so that the task can defer without losing a single call.

Two ways, chosen by the compute backend:

* **In process** (FaaS and batch cloud backends). After ``map()`` returns, Lithops'
  FaaS invoker may still be invoking calls on a thread pool, and keeps the calls
  beyond ``max_workers`` in an in-process queue fed by its local monitor: deferring
  then would lose them. On the backends the trigger can invoke (OpenWhisk, IBM Cloud
  Functions, AWS Lambda) those calls are left to the trigger instead (:mod:`pywren_deferrable.dispatch`):
  the task waits only for the first wave. Elsewhere we wait until that queue is empty and
  the invoke pool has finished (immediately true with the backend's ``remote_invoker``,
  the seed's ``remote_invocation``), and only then defer.
* **Detached runner** (the ``localhost`` backend). Lithops runs localhost calls in
  child processes of the submitting process, which therefore cannot exit until the
  job ends. A detached process (``python -m pywren_deferrable.runner``, its own
  session, output in a log file) submits and hosts the job instead, reports the job
  ids back through a small JSON file, and the task defers as soon as they arrive.

pywren-ibm-cloud jobs (the ``pywren`` engine) always take the detached runner: a pywren
executor feeds the calls beyond its ``workers`` from its own process on every backend
(see :mod:`pywren_deferrable.pywren_engine`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from pywren_deferrable.config import engine_of, storage_location
from pywren_deferrable.dispatch.audit import (
    InvocationAudit,
    InvocationRefused,
    make_ibm_cf_redeploy_lock_reentrant,
)
from pywren_deferrable.dispatch.capture import PendingCapture, store_plans, why_not_capture
from pywren_deferrable.dispatch.plan import DispatchPlan, PlanError
from pywren_deferrable.extras import check_backend_modules
from pywren_deferrable.hooks.ibm_iam import give_lithops_an_iam_token
from pywren_deferrable.job import ENGINE_NAMES, ENGINE_PYWREN, STORAGE_LOCALHOST, JobRef
from pywren_deferrable.lithops_cache import torn_cache_file

log = logging.getLogger(__name__)

# A torn read of Lithops' runtime metadata cache (lithops_cache): the writer takes
# milliseconds; three reads spread over 0.6 s.
TORN_CACHE_ATTEMPTS = 3
TORN_CACHE_PAUSE = 0.1

CALL_TYPES = ("call_async", "map", "map_reduce")
# lithops/constants.py: SESSION_ID_ENV, TOTAL_EXECUTORS_ENV.
LITHOPS_SESSION_ENV = ("__LITHOPS_SESSION_ID", "__LITHOPS_TOTAL_EXECUTORS")
DEFAULT_SUBMIT_TIMEOUT = 600.0
LITHOPS_DEFAULT_EXECUTION_TIMEOUT = 1800  # lithops.constants, when the config sets none
PYWREN_DEFAULT_RUNTIME_TIMEOUT = 600  # pywren's localhost default; its calls get 5 s less
RUNNER_DIR_ENV = "PYWREN_DEFERRABLE_RUNNER_DIR"
PRIVATE_TMPDIR_ENV = "PYWREN_DEFERRABLE_PRIVATE_TMPDIR"


class SubmitError(RuntimeError):
    """The job could not be handed to the compute backend."""


@dataclass
class JobSpec:
    """What to run: everything ``FunctionExecutor`` needs, and nothing Airflow.

    :param call_type: ``call_async``, ``map`` or ``map_reduce``.
    :param function: the (map) function.
    :param iterdata: the map iterdata, or the ``data`` of a ``call_async``.
    :param reduce_function: the reduce function of a ``map_reduce``.
    :param options: keyword arguments for the Lithops call (``extra_args``...).
    :param config: the Lithops config (holds credentials: never logged or XCom'd).
    """

    call_type: str
    function: Callable[..., Any]
    iterdata: Any
    config: dict[str, Any]
    reduce_function: Callable[..., Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.call_type not in CALL_TYPES:
            raise ValueError(f"call_type must be one of {CALL_TYPES}, got {self.call_type!r}")

    def __repr__(self) -> str:  # the config holds secrets
        return f"JobSpec(call_type={self.call_type!r}, function={getattr(self.function, '__name__', '?')})"


def object_urls(iterdata: Any) -> list[str]:
    """The storage URLs a map's inputs name (``"cos://b/p/"`` or ``{"obj": url}``), in order."""
    items = [iterdata] if isinstance(iterdata, str | dict) else iterdata
    urls: list[str] = []
    for item in items if isinstance(items, list | tuple) else ():
        url = item.get("obj") if isinstance(item, dict) else item
        if isinstance(url, str) and "://" in url:
            urls.append(url)
    return urls


def explain_refusal(spec: JobSpec, error: str) -> str:
    """``error`` from the engine, with what the user wrote that it is about.

    Lithops says ``No objects found`` and nothing else when a map over storage URLs finds
    no object: name the URLs and their buckets, which is what the user has to check.
    """
    if "No objects found" in error:
        urls = object_urls(spec.iterdata)
        if urls:
            shown = ", ".join(urls[:5]) + (f" (and {len(urls) - 5} more)" if len(urls) > 5 else "")
            buckets = sorted({url.partition("://")[2].split("/", 1)[0] for url in urls})
            return (
                f"{error}: no object under {shown} (bucket {', '.join(map(repr, buckets))}); check the "
                "bucket and the prefix, and that the Connection's storage is the one that holds them"
            )
    return error


def call_timeout(spec: JobSpec) -> float:
    """How long one call of ``spec`` may run before its engine stops it."""
    if spec.options.get("timeout"):
        return float(spec.options["timeout"])
    if engine_of(spec.config) == ENGINE_PYWREN:
        return float(spec.config["pywren"].get("runtime_timeout") or PYWREN_DEFAULT_RUNTIME_TIMEOUT)
    timeout = spec.config.get("lithops", {}).get("execution_timeout")
    return float(timeout or LITHOPS_DEFAULT_EXECUTION_TIMEOUT)


def run_on_executor(fexec: Any, spec: JobSpec) -> list[Any]:
    """Submit ``spec`` on a Lithops ``FunctionExecutor``; return the futures of every job.

    A read of Lithops' runtime-metadata cache file while another process writes it is
    tried again (:mod:`pywren_deferrable.lithops_cache`), as long as no job was created."""
    attempt = 0
    while True:
        attempt += 1
        calls_before = len(getattr(fexec, "futures", ()))
        try:
            return _submit_on_executor(fexec, spec)
        except ValueError as err:
            path = torn_cache_file(err)
            if path is None or len(getattr(fexec, "futures", ())) != calls_before:
                raise
            if attempt == TORN_CACHE_ATTEMPTS:
                raise SubmitError(
                    f"Lithops' runtime metadata cache {path} is not valid JSON ({err}) after "
                    f"{attempt} reads; if no other task is writing it, delete the file"
                ) from err
            log.warning("Lithops read %s while it was being written (%s): submitting again", path, err)
            time.sleep(TORN_CACHE_PAUSE * attempt)


def _submit_on_executor(fexec: Any, spec: JobSpec) -> list[Any]:
    if spec.call_type == "call_async":
        return [fexec.call_async(spec.function, spec.iterdata, **spec.options)]
    if spec.call_type == "map":
        return list(fexec.map(spec.function, spec.iterdata, **spec.options))
    return list(fexec.map_reduce(spec.function, spec.iterdata, spec.reduce_function, **spec.options))


def summarize_futures(executor_id: str, futures: list[Any], engine_version: str) -> dict[str, Any]:
    """The JSON-able ids and counts of the jobs behind ``futures`` (Lithops' or pywren's:
    both futures carry their ``job_id``)."""
    total_calls: dict[str, int] = {}
    for future in futures:
        total_calls[future.job_id] = total_calls.get(future.job_id, 0) + 1
    # Map jobs before reduce jobs: the order in which they finish.
    job_ids = sorted(total_calls, key=lambda j: ("AMR".index(j[0]), j))
    return {
        "executor_id": executor_id,
        "job_ids": job_ids,
        "total_calls": total_calls,
        "engine_version": engine_version,
    }


def job_summary(fexec: Any, futures: list[Any]) -> dict[str, Any]:
    """The summary of a Lithops job (see :func:`summarize_futures`)."""
    import lithops

    return summarize_futures(fexec.executor_id, futures, lithops.__version__)


def wait_until_dispatched(
    fexec: Any,
    *,
    timeout: float,
    poll: float = 0.5,
    audit: InvocationAudit | None = None,
    total_calls: dict[str, int] | None = None,
) -> None:
    """Block until every call of the executor has been handed to the FaaS backend.

    Lithops' FaaS invoker keeps calls beyond ``max_workers`` in ``pending_calls_q``
    and invokes them as its local monitor sees calls finish; those would be lost if
    the process exited. With the remote invoker there is nothing pending. With an
    ``audit`` of the backend's answers, it then waits until every call of
    ``total_calls`` (job id -> count) has an activation id, and fails on a refusal.
    """
    invoker = fexec.invoker
    pending_q = getattr(invoker, "pending_calls_q", None)
    deadline = time.monotonic() + timeout
    warned = False
    while pending_q is not None and not pending_q.empty():
        if audit is not None and audit.refused:
            break  # reported below
        if not warned:
            log.warning(
                "%d call chunks are waiting for a free worker slot in this process; the task "
                "waits here until they are invoked (set remote_invocation=True to defer at once)",
                pending_q.qsize(),
            )
            warned = True
        if time.monotonic() > deadline:
            raise SubmitError(
                f"calls were still queued for invocation after {timeout:.0f}s; deferring now would "
                "lose them. Use remote_invocation=True (the backend's remote_invoker) for large jobs"
            )
        time.sleep(poll)
    if audit is None or total_calls is None:
        pool = getattr(invoker, "executor", None)
        if pool is not None:
            pool.shutdown(wait=True)  # in-flight invocations must be accepted before we leave
        return
    try:
        audit.wait_all_accepted(total_calls, timeout=max(deadline - time.monotonic(), 0.0))
    except InvocationRefused as err:
        raise SubmitError(str(err)) from err
    except TimeoutError as err:
        raise SubmitError(f"{err}; deferring now would lose them") from err


def submit_in_process(
    spec: JobSpec, *, timeout: float = DEFAULT_SUBMIT_TIMEOUT, dispatch: bool = False
) -> JobRef:
    """Submit on a cloud backend from this process, and return once every call is out.

    :param dispatch: leave the calls beyond ``max_workers`` to the trigger (see
        :mod:`pywren_deferrable.dispatch`) when the backend allows it; only for a task that
        will run the trigger (a task that returns its JobRef at once has nobody to invoke
        them, so it waits here as before).
    """
    import lithops

    submitted_at = time.time()
    if spec.config.get("lithops", {}).get("backend") == "ibm_cf":
        make_ibm_cf_redeploy_lock_reentrant()
    fexec = lithops.FunctionExecutor(config=spec.config)
    capture = None
    if dispatch:
        reason = why_not_capture(fexec)
        if reason is None and fexec.invoker is not None:
            capture = PendingCapture(fexec)
        elif reason:
            log.info("Calls beyond max_workers are invoked from this process (%s)", reason)
    # FaaS backends are invoked call by call: know which calls the platform accepted.
    audit = (
        InvocationAudit(fexec.compute_handler) if fexec.compute_handler.get_backend_type() == "faas" else None
    )
    try:
        try:
            futures = run_on_executor(fexec, spec)
        except Exception as err:
            raise SubmitError(
                f"Lithops refused the job: {explain_refusal(spec, f'{type(err).__name__}: {err}')}"
            ) from err
        summary = job_summary(fexec, futures)
        plans: dict[str, DispatchPlan] = {}
        if capture is None:
            wait_until_dispatched(fexec, timeout=timeout, audit=audit, total_calls=summary["total_calls"])
        else:
            plans = _leave_to_trigger(fexec, capture, audit, spec.config, summary["total_calls"])
    except BaseException:
        fexec.invoker.stop()  # no retry of a failed submission behind the task's back
        fexec.job_monitor.stop()
        raise
    fexec.job_monitor.stop()
    return job_ref(spec, summary, submitted_at, dispatch=tuple(sorted(plans)))


def _leave_to_trigger(
    fexec: Any,
    capture: PendingCapture,
    audit: InvocationAudit | None,
    connection_config: dict[str, Any],
    total_calls: dict[str, int],
) -> dict[str, DispatchPlan]:
    """Wait for the first wave only, and store the plans of the chunks left to the trigger.

    Every call must end up either accepted by the platform or in a plan: anything else
    would be lost, so it fails the submit."""
    capture.wait_first_wave()
    if capture.errors:
        where, error = capture.errors[0]
        raise SubmitError(
            f"the compute backend refused {len(capture.errors)} invocation(s) of the first wave "
            f"(first: {where}): {type(error).__name__}: {error}"
        )
    try:
        plans = capture.build_plans(connection_config)
    except PlanError as err:
        raise SubmitError(
            f"the first {fexec.invoker.max_workers} call chunk(s) are running, but the rest cannot be "
            f"left to the trigger: {err}"
        ) from None
    if audit is not None:
        first_wave = {
            job_id: total - sum(len(c.call_ids) for c in plans[job_id].pending) if job_id in plans else total
            for job_id, total in total_calls.items()
        }
        try:
            audit.wait_all_accepted(first_wave, timeout=0.0)
        except InvocationRefused as err:
            raise SubmitError(str(err)) from err
        except TimeoutError as err:
            raise SubmitError(f"{err}; deferring now would lose them") from err
    store_plans(fexec, plans)
    if plans:
        log.info(
            "%d call chunk(s) beyond max_workers=%d left to the trigger (dispatch plan stored with the job)",
            sum(len(p.pending) for p in plans.values()),
            next(iter(plans.values())).max_workers,
        )
    return plans


def job_ref(spec: JobSpec, summary: dict[str, Any], submitted_at: float, **runner: Any) -> JobRef:
    """The JobRef of ``spec`` submitted at ``submitted_at``, from :func:`job_summary`."""
    return JobRef(
        executor_id=summary["executor_id"],
        job_ids=tuple(summary["job_ids"]),
        total_calls=summary["total_calls"],
        storage=storage_location(spec.config),
        call_type=spec.call_type,
        engine_version=summary["engine_version"],
        submitted_at=submitted_at,
        call_timeout=call_timeout(spec),
        engine=engine_of(spec.config),
        **runner,
    )


def runner_dir() -> str:
    """A private directory for runner specs, handshakes and logs."""
    path = os.environ.get(RUNNER_DIR_ENV) or os.path.join(tempfile.gettempdir(), "pywren-deferrable-runners")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-limit:]
    except OSError:
        return "(no runner log)"


def submit_detached(
    spec: JobSpec, *, deadline: float | None, timeout: float = DEFAULT_SUBMIT_TIMEOUT, name: str = "job"
) -> JobRef:
    """Submit a job from a detached runner process that hosts it (Lithops ``localhost``, or pywren).

    :param deadline: epoch seconds after which the runner stops the job, if any.
    :param timeout: how long to wait for the runner to report the job ids.
    :param name: a label for the runner's files (the task id, say).
    """
    submitted_at = time.time()
    engine = ENGINE_NAMES[engine_of(spec.config)]
    directory = runner_dir()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    fd, spec_path = tempfile.mkstemp(prefix=f"{safe}-", suffix=".spec", dir=directory)
    base = spec_path[: -len(".spec")]
    handshake_path, log_path = base + ".json", base + ".log"
    with os.fdopen(fd, "wb") as handle:  # mkstemp made it 0600: the config holds secrets
        cloudpickle.dump({"spec": spec, "deadline": deadline}, handle)
    # The runner must import what the task could import (the DAG folder, plugins...).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    # Lithops exports its session id and executor count to the environment of a process
    # that made an executor (lithops/utils.py, create_executor_id), and a child process
    # carries on from them: two runners started from such a process would both take the
    # next executor id, and two maps of theirs the same job keys. Each runner starts its own.
    for variable in LITHOPS_SESSION_ENV:
        env.pop(variable, None)
    if storage_location(spec.config).kind != STORAGE_LOCALHOST:
        # Each Lithops localhost executor deletes and re-copies Lithops into
        # $TMPDIR/lithops-<user>/, under the feet of another job's workers: concurrent
        # jobs then lose calls. A private TMPDIR per runner keeps them apart. (Lithops'
        # localhost *storage* lives there too, so jobs using it must share the default.)
        env["TMPDIR"] = tempfile.mkdtemp(prefix=f"{safe}-tmp-", dir=directory)
        env[PRIVATE_TMPDIR_ENV] = env["TMPDIR"]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "pywren_deferrable.runner", spec_path, handshake_path],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the task and its process group
            close_fds=True,
            env=env,
        )
    give_up = time.monotonic() + timeout
    while not os.path.exists(handshake_path):
        if process.poll() is not None:
            _remove_quietly(spec_path)
            raise SubmitError(
                f"the {engine} runner exited with code {process.returncode} before submitting the job; "
                f"its log ({log_path}) ends with:\n{_tail(log_path)}"
            )
        if time.monotonic() > give_up:
            process.kill()
            _remove_quietly(spec_path)
            raise SubmitError(
                f"the {engine} runner did not submit the job within {timeout:.0f}s; see {log_path}"
            )
        time.sleep(0.05)
    with open(handshake_path, encoding="utf-8") as handle:
        summary = json.load(handle)
    os.remove(handshake_path)
    if "error" in summary:
        raise SubmitError(
            f"{engine} refused the job: {explain_refusal(spec, summary['error'])}\n(runner log: {log_path})"
        )
    return job_ref(spec, summary, submitted_at, runner_pid=process.pid, runner_log=log_path)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _runner_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_runner(job: JobRef) -> bool:
    """Stop the detached runner hosting ``job`` (it then kills the job's processes).

    Only a process that is provably that runner is signalled: its command line must name
    this job's runner files, so a recycled pid, or a runner on another machine, is left
    alone. Returns whether a runner was signalled.
    """
    if not job.runner_pid or not job.runner_log:
        return False
    base = job.runner_log[: -len(".log")] if job.runner_log.endswith(".log") else job.runner_log
    cmdline = _runner_cmdline(job.runner_pid)
    if "pywren_deferrable.runner" not in cmdline or base not in cmdline:
        return False
    try:
        os.kill(job.runner_pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def is_localhost(config: dict[str, Any]) -> bool:
    """True when the config runs functions on this machine (Lithops ``localhost``)."""
    return bool(config.get("lithops", {}).get("backend") == "localhost")


def submit(spec: JobSpec, *, deadline: float | None, name: str = "job", dispatch: bool = False) -> JobRef:
    """Submit ``spec`` the way its engine and backend need (see the module docstring).

    A backend whose cloud SDK is not installed fails here, naming the extra to install,
    instead of with a ``ModuleNotFoundError`` from inside Lithops (or its runner). IBM COS
    with an API key gets its IAM token here, from the Connection's IAM endpoint.

    :param dispatch: the task will run the trigger, which can invoke the calls beyond
        ``max_workers`` of a FaaS backend (see :func:`submit_in_process`).
    """
    check_backend_modules(spec.config)
    give_lithops_an_iam_token(spec.config)
    if engine_of(spec.config) == ENGINE_PYWREN or is_localhost(spec.config):
        return submit_detached(spec, deadline=deadline, name=name)
    return submit_in_process(spec, dispatch=dispatch)
