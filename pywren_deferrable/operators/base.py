"""The flow every PyWren operator shares: submit, defer, resume with results.

Subclasses only say *what* to run (:meth:`PyWrenBaseOperator.build_spec`); this class
submits it (see :mod:`pywren_deferrable.submit`), defers to
:class:`~pywren_deferrable.triggers.job.PyWrenJobTrigger`, and on resume fetches the
results, cleans the job's objects if asked, and fails with the remote tracebacks when a
call failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from pywren_deferrable.call_status import CallStatus
from pywren_deferrable.config import compute_backend_name, normalize_overrides, validate_backend_names
from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.job import ENGINE_NAMES, JobRef
from pywren_deferrable.lineage import afind_reusable, aremember, task_lineage
from pywren_deferrable.links import JOB_URL_ATTRIBUTE, PyWrenJobLink, job_console_url
from pywren_deferrable.operators.validation import (
    check_module_list,
    check_optional_positive_int,
    check_optional_positive_number,
    check_str_dict,
)
from pywren_deferrable.pricing import price_for
from pywren_deferrable.resume import ResultCollector, finish_job
from pywren_deferrable.retries import STATE_KEY as RETRY_STATE_KEY
from pywren_deferrable.retries import (
    RetryState,
    RoundResults,
    check_call_retries,
    failure_header,
    first_state,
    inputs_changed,
    on_task_retry,
    resumes_failures,
    round_fail_fast,
    state_of,
    task_will_retry,
)
from pywren_deferrable.retries import resume as resume_round
from pywren_deferrable.submit import JobSpec, stop_runner, submit
from pywren_deferrable.sync_bridge import run_sync
from pywren_deferrable.tracebacks import code_index, restore_filenames
from pywren_deferrable.triggers.job import DEFAULT_POLL_INTERVAL, PyWrenJobTrigger
from pywren_deferrable.ui.record import JobRecord, job_xcom_key
from pywren_deferrable.usage import usage_line, usage_of

DEFAULT_RUNTIME_MEMORY = 256  # MB, the seed's default
DEFAULT_MAX_XCOM_BYTES = 1024 * 1024


class PyWrenBaseOperator(BaseOperator):
    """Base of the PyWren operators: the seed's inherited parameters plus deferral.

    :param lithops_conn_id: Airflow Connection (type ``lithops``) holding the Lithops config.
    :param pywren_executor_config: Lithops config overrides for this task, as config
        sections (``{"code_engine": {...}}``) or flat executor keys (``{"runtime": ...}``).
    :param wait_for_result: wait for the job to end (``False``: return its JobRef at once).
    :param fetch_result: download the results (``False``: return where they are).
    :param clean_data: delete the job's objects from storage once the task is done.
    :param extra_env: environment variables for the functions.
    :param runtime_memory: memory of each function, in MB.
    :param timeout: how long each function may run, in seconds (Lithops' default if None).
    :param include_modules: modules to pickle with the function.
    :param exclude_modules: modules not to pickle with the function.
    :param job_timeout: how long the whole job may take, in seconds, before the task
        fails with a timeout (None: no limit besides the functions' own ``timeout``).
    :param poll_interval: the longest pause between status polls, in seconds.
    :param fail_fast: fail as soon as one call fails instead of waiting for all.
    :param deferrable: free the worker slot while the job runs (the point of this
        provider); ``False`` waits on the worker like the seed plugin did.
    :param max_xcom_bytes: results larger than this (pickled) are not pushed through
        XCom: the task returns where they are instead, and keeps them. ``None``: no limit
        (the right choice with an object-storage XCom backend).
    :param call_retries: how many times a failed call is resubmitted on its own within
        one task try (Lithops' ``retries``; a call gets ``call_retries + 1`` tries).
        Between rounds the task defers: no worker slot is held. Airflow's ``retries``
        stays the task's; an Airflow retry resubmits only the calls that failed.
        See :mod:`pywren_deferrable.retries`.
    """

    template_fields: Sequence[str] = ("pywren_executor_config", "extra_env")
    operator_extra_links = (PyWrenJobLink(),)
    ui_color = "#a8d5f7"
    call_type = "map"

    def __init__(
        self,
        *,
        lithops_conn_id: str = LithopsHook.default_conn_name,
        pywren_executor_config: dict[str, Any] | None = None,
        wait_for_result: bool = True,
        fetch_result: bool = True,
        clean_data: bool = False,
        extra_env: dict[str, str] | None = None,
        runtime_memory: int | None = DEFAULT_RUNTIME_MEMORY,
        timeout: int | None = None,
        include_modules: list[str] | None = None,
        exclude_modules: list[str] | None = None,
        job_timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        fail_fast: bool = True,
        deferrable: bool = True,
        max_xcom_bytes: int | None = DEFAULT_MAX_XCOM_BYTES,
        call_retries: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(lithops_conn_id, str):
            raise TypeError(f"lithops_conn_id must be a str, got {type(lithops_conn_id).__name__}")
        if not lithops_conn_id:
            raise ValueError("lithops_conn_id must not be empty")
        # The overrides alone are checked here (the Connection is read at execute), so that
        # a malformed section or an unknown backend name fails at parse time.
        try:
            validate_backend_names(normalize_overrides(pywren_executor_config))
        except ValueError as err:
            raise ValueError(f"pywren_executor_config: {err}") from err
        self.lithops_conn_id = lithops_conn_id
        self.pywren_executor_config = dict(pywren_executor_config or {})
        self.wait_for_result = bool(wait_for_result)
        self.fetch_result = bool(fetch_result)
        self.clean_data = bool(clean_data)
        self.extra_env = check_str_dict("extra_env", extra_env)
        self.runtime_memory = check_optional_positive_int("runtime_memory", runtime_memory)
        self.timeout = check_optional_positive_int("timeout", timeout)
        self.include_modules = check_module_list("include_modules", include_modules)
        self.exclude_modules = check_module_list("exclude_modules", exclude_modules)
        self.job_timeout = check_optional_positive_number("job_timeout", job_timeout)
        self.poll_interval = (
            check_optional_positive_number("poll_interval", poll_interval) or DEFAULT_POLL_INTERVAL
        )
        self.fail_fast = bool(fail_fast)
        self.deferrable = bool(deferrable)
        self.max_xcom_bytes = check_optional_positive_int("max_xcom_bytes", max_xcom_bytes)
        self.call_retries = check_call_retries(call_retries)
        if self.call_retries and not self.wait_for_result:
            raise ValueError("call_retries needs wait_for_result=True: the task resubmits failed calls")

    # -- what to run ------------------------------------------------------------------
    def build_spec(self, context: Any, config: dict[str, Any]) -> JobSpec:
        """The job to submit. Subclasses implement this."""
        raise NotImplementedError

    def common_options(self) -> dict[str, Any]:
        """Lithops keyword arguments every call type takes."""
        options: dict[str, Any] = {
            "extra_env": self.extra_env,
            "timeout": self.timeout,
            "include_modules": self.include_modules if self.include_modules is not None else [],
            "exclude_modules": self.exclude_modules if self.exclude_modules is not None else [],
        }
        return options

    def executor_overrides(self) -> dict[str, Any]:
        """Config overrides this operator adds to ``pywren_executor_config``."""
        return dict(self.pywren_executor_config)

    # -- the flow ---------------------------------------------------------------------
    def _hook(self) -> LithopsHook:
        return LithopsHook(lithops_conn_id=self.lithops_conn_id, executor_config=self.executor_overrides())

    def _deadline(self) -> float | None:
        return time.time() + self.job_timeout if self.job_timeout else None

    def _trigger(
        self, job: JobRef, deadline: float | None, resume_state: dict[str, Any] | None = None
    ) -> PyWrenJobTrigger:
        return PyWrenJobTrigger(
            job=job.to_dict(),
            lithops_conn_id=self.lithops_conn_id,
            poll_interval=self.poll_interval,
            deadline=deadline,
            fail_fast=round_fail_fast(self.fail_fast, resume_state or {}),
            resume_state=resume_state,
            clean_data=self.clean_data,
        )

    def _runner_name(self, context: Any) -> str:
        ti = context.get("ti") if hasattr(context, "get") else None
        parts = [getattr(ti, "dag_id", None) or "dag", self.task_id]
        return ".".join(str(p) for p in parts)

    def first_stage_state(self) -> dict[str, Any]:
        """State a multi-stage operator needs when the first job ends (see map_reduce)."""
        return {}

    # -- call_retries (the logic is in pywren_deferrable/retries.py) -----------------
    def first_retry_state(self, spec: JobSpec, job: JobRef) -> dict[str, Any]:
        """The rounds state of a first submission (see :func:`..retries.first_state`)."""
        return first_state(self.call_retries, spec, job)

    def _inputs_changed(
        self, context: Any, config: dict[str, Any], resume_state: dict[str, Any]
    ) -> str | None:
        """Why an earlier try's rounds do not fit this try's inputs (see retries.py)."""
        try:
            state = state_of(resume_state)
        except AirflowException as err:
            return str(err)
        return inputs_changed(state, self.retry_spec(context, config)) if state else None

    def input_elements(self, context: Any) -> list[Any] | None:
        """The task's inputs as the user gave them, one per call, for failure messages
        (``None`` when unknown, or when they cannot be read again)."""
        return None

    def retry_spec(self, context: Any, config: dict[str, Any]) -> JobSpec:
        """The spec whose inputs the retry rounds resubmit (a map or a call_async)."""
        return self.build_spec(context, config)

    def finish_rounds(self, context: Any, event: Any, state: RetryState) -> Any:
        """Every input succeeded: its results, each from the last round that ran it."""
        return self.shape_results(
            self.finish_job(
                event,
                also_clean=state.earlier_jobs(),
                forget_key=task_lineage(context),
                collector=RoundResults(state),
                usage=lambda job, config, statuses: self.rounds_usage_summary(state, job, config, statuses),
            )
        )

    def rounds_usage_summary(
        self, state: RetryState, job: JobRef, config: dict[str, Any], statuses: list[CallStatus]
    ) -> str | None:
        """The usage line of a task whose inputs ran in retry rounds: wall time from this
        try's first submission (not the last round's), and how many rounds ran. The
        statuses are those the results were read from: one per input, its last try. A try
        that reattached to an earlier try's job ran no round of its own: that job counts."""
        rounds = state.rounds[state.try_start :] or state.rounds[-1:]
        line = self.usage_summary(replace(job, submitted_at=rounds[0].job.submitted_at), config, statuses)
        return f"{line} ({len(rounds)} rounds)" if line and len(rounds) > 1 else line

    def fail_rounds(self, context: Any, event: Any, state: RetryState) -> Any:
        """Fail with the last round's errors, saying how many tries each failed input had."""
        header = failure_header(event, state, self.input_elements(context)) if isinstance(event, dict) else ""
        # With clean_data, the rounds are kept when Airflow will retry: that try reuses them.
        keep = self.clean_data and task_will_retry(context) and state.why_not_retried() is None
        if keep:
            self.log.info("clean_data: keeping the rounds' objects for the task's next try to reuse")
        try:
            result = self.finish_job(
                event, also_clean=state.earlier_jobs(), clean_data=False if keep else None
            )
        except AirflowException as err:
            raise AirflowException(f"{header}\n{err}" if header else str(err)) from None
        raise AirflowException(f"unexpected trigger event for a retry round: {result!r:.300}")

    def _storage(self, config: dict[str, Any], job_storage: Any, action: Any) -> Any:
        """Run ``action(source)`` against the job's bucket from this (sync) worker code."""
        hook = self._hook()

        async def run() -> Any:
            async with hook.status_source_from_config(job_storage, config) as source:
                return await action(source)

        return run_sync(run)

    def execute(self, context: Any) -> Any:
        config = self._hook().get_config()
        deadline = self._deadline()
        lineage = task_lineage(context)
        location = self._hook().storage_location(config)
        previous = (
            self._storage(config, location, lambda s: afind_reusable(s, lineage, resumable=resumes_failures))
            if lineage
            else None
        )
        changed = self._inputs_changed(context, config, previous.resume_state) if previous else None
        if previous is not None and changed:
            self.log.warning(
                "Not reattaching to job %s of try %s: %s; submitting every call again",
                previous.job.executor_id,
                previous.try_number,
                changed,
            )
            previous = None
        if previous is not None:
            # A retry: the earlier try's job is running or done, and nothing failed (or
            # its failed calls can be resubmitted alone once it ends: see retries.py).
            self.log.warning(
                "Reattaching to job %s submitted by try %s (%d/%d calls done, %d failed) instead of "
                "submitting it again",
                previous.job.executor_id,
                previous.try_number,
                previous.done,
                previous.total,
                previous.failed,
            )
            job, state = previous.job, on_task_retry(dict(previous.resume_state), self.call_retries)
            state.pop("deadline", None)
        else:
            spec = self.build_spec(context, config)
            job = self.submit_spec(context, spec, deadline)
            state = {**self.first_stage_state(), **self.first_retry_state(spec, job)}
            self.remember_job(context, config, job, state)
        if not self.wait_for_result:
            return job.to_dict()
        return self.wait_for_job(context, job, deadline=deadline, **state)

    def remember_job(self, context: Any, config: dict[str, Any], job: JobRef, state: dict[str, Any]) -> None:
        """Record ``job`` for a retry of this task instance (see :mod:`..lineage`)."""
        lineage = task_lineage(context)
        if lineage:
            try_number = getattr(context.get("ti"), "try_number", None)
            self._storage(config, job.storage, lambda s: aremember(s, lineage, job, state, try_number))

    def submit_spec(self, context: Any, spec: JobSpec, deadline: float | None) -> JobRef:
        """Hand ``spec`` to its engine; return once every call is out (see :mod:`..submit`)."""
        # Only a task that runs the trigger can leave calls beyond max_workers to it.
        job = submit(spec, deadline=deadline, name=self._runner_name(context), dispatch=self.wait_for_result)
        self._submitted = job  # for on_kill
        self.log.info(
            "Submitted %s executor %s jobs %s: %d calls (storage %s://%s)",
            ENGINE_NAMES[job.engine],
            job.executor_id,
            ",".join(job.job_ids),
            job.calls,
            job.storage.kind,
            job.storage.bucket,
        )
        if job.runner_log:
            self.log.info("Local job hosted by runner pid %s, log: %s", job.runner_pid, job.runner_log)
        self.publish_link(context, job)
        self.publish_job(context, job, spec)
        return job

    def publish_job(self, context: Any, job: JobRef, spec: JobSpec) -> None:
        """Record ``job`` in XCom for the "Lithops job" tab (see :mod:`..ui.record`): the
        tab then finds it while the task is deferred and after it ended."""
        push = getattr(context.get("ti") if hasattr(context, "get") else None, "xcom_push", None)
        if push is None:
            return
        options = spec.options or {}
        memory = options.get("runtime_memory") or options.get("map_runtime_memory") or self.runtime_memory
        record = JobRecord(job, self.lithops_conn_id, memory, compute_backend_name(spec.config))
        push(key=job_xcom_key(job), value=record.to_dict())

    def publish_link(self, context: Any, job: JobRef) -> None:
        """Store the job's console URL for the "Lithops job data" extra link."""
        ti = context.get("ti") if hasattr(context, "get") else None
        url = self.remember_link(job)
        push = getattr(ti, "xcom_push", None)
        if url and push is not None:
            push(key=PyWrenJobLink().xcom_key, value=url)

    def remember_link(self, job: JobRef) -> str | None:
        """Keep the job's console URL on the operator, where :class:`PyWrenJobLink` finds
        it when the task ends (a resumed task is a fresh operator: it learns its job from
        the trigger event)."""
        url = job_console_url(job, self._hook().console_url_template())
        setattr(self, JOB_URL_ATTRIBUTE, url or "")
        return url

    def wait_for_job(self, context: Any, job: JobRef, *, deadline: float | None, **state: Any) -> Any:
        """Defer until ``job`` ends (or, with ``deferrable=False``, wait here), then resume
        in :meth:`execute_complete`, which finds ``state`` in the event's ``resume_state``."""
        trigger = self._trigger(job, deadline, {"deadline": deadline, **state})
        if not self.deferrable:
            return self.execute_complete(context, self._wait_here(trigger))
        self.defer(trigger=trigger, method_name="execute_complete")

    def on_kill(self) -> None:
        """The task was killed while waiting on the worker: stop a local job we host."""
        job = getattr(self, "_submitted", None)
        if job is not None and stop_runner(job):
            self.log.info("Stopped the local %s runner of job %s", ENGINE_NAMES[job.engine], job.executor_id)

    def _wait_here(self, trigger: PyWrenJobTrigger) -> dict[str, Any]:
        """Run the trigger's poll loop on the worker (``deferrable=False``): same events."""

        async def first_event() -> dict[str, Any]:
            return dict((await trigger.wait_for_event()).payload)

        return run_sync(first_event)

    @staticmethod
    def resume_state(event: Any) -> dict[str, Any]:
        """The state :meth:`wait_for_job` left in the trigger event."""
        state = event.get("resume_state") if isinstance(event, dict) else None
        return state if isinstance(state, dict) else {}

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: fetch results or fail with the remote errors
        (or, with retry rounds, resubmit the failed calls: see retries.py)."""
        self.remember_link_from_event(event)
        if RETRY_STATE_KEY in self.resume_state(event):
            return resume_round(self, context, event)
        also_clean = self.resume_state(event).get("also_clean")
        return self.shape_results(
            self.finish_job(event, also_clean=also_clean, forget_key=task_lineage(context))
        )

    def remember_link_from_event(self, event: Any) -> None:
        """:meth:`remember_link` for the event's job, first thing on resume, so that a task
        failing on its job's results still shows the link (a bad event shows none)."""
        setattr(self, JOB_URL_ATTRIBUTE, "")
        try:
            self.remember_link(JobRef.from_dict(event["job"]))
        except Exception as err:  # the link is a convenience: never the task's error
            self.log.debug("no job link: %s", err)

    def finish_job(
        self,
        event: Any,
        *,
        fetch: bool | None = None,
        also_clean: list[dict[str, Any]] | None = None,
        forget_key: str | None = None,
        collector: ResultCollector | None = None,
        clean_data: bool | None = None,
        usage: Callable[[JobRef, dict[str, Any], list[CallStatus]], str | None] | None = None,
    ) -> Any:
        """See :func:`pywren_deferrable.resume.finish_job`."""
        return finish_job(
            self._hook(),
            event,
            fetch=self.fetch_result if fetch is None else fetch,
            clean_data=self.clean_data if clean_data is None else clean_data,
            also_clean=also_clean,
            max_xcom_bytes=self.max_xcom_bytes,
            forget_key=forget_key,
            explain=self.explain_failure,
            usage=usage or self.usage_summary,
            log=self.log,
            collector=collector,
        )

    def usage_summary(self, job: JobRef, config: dict[str, Any], statuses: list[CallStatus]) -> str | None:
        """The line logged when the results are in: calls, wall, call-seconds, GB-s, cost
        (see :mod:`..usage`). A price that cannot be read leaves the cost out, never fails."""
        try:
            extra = self._hook().get_connection(self.lithops_conn_id).extra_dejson
            price = price_for(compute_backend_name(config), extra)
        except Exception as err:
            self.log.debug("no price for the usage summary: %s", err)
            price = None
        usage = usage_of(statuses, submitted_at=job.submitted_at, memory_mb=self.usage_memory(), price=price)
        return usage_line(job.executor_id, usage)

    def usage_memory(self) -> int | None:
        """MB of each call, for GB-seconds (map_reduce: its map calls')."""
        return self.runtime_memory

    def payload_functions(self) -> list[Callable[..., Any]]:
        """The functions this operator ships to Lithops (subclasses name theirs)."""
        return []

    def explain_failure(self, report: str) -> str:
        """Point the remote tracebacks' ``<dynamic-code>`` frames at the DAG file."""
        return restore_filenames(report, code_index(self.payload_functions()))

    def shape_results(self, results: Any) -> Any:
        """Turn the list of call results into the task's return value."""
        return results
