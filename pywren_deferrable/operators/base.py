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
from typing import Any

from airflow.sdk import BaseOperator

from pywren_deferrable.config import normalize_overrides, validate_backend_names
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
from pywren_deferrable.resume import finish_job
from pywren_deferrable.submit import JobSpec, stop_runner, submit
from pywren_deferrable.sync_bridge import run_sync
from pywren_deferrable.tracebacks import code_index, restore_filenames
from pywren_deferrable.triggers.job import DEFAULT_POLL_INTERVAL, PyWrenJobTrigger

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
            fail_fast=self.fail_fast,
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
        previous = self._storage(config, location, lambda s: afind_reusable(s, lineage)) if lineage else None
        if previous is not None:
            # A retry: the earlier try's job is running or done, and nothing failed.
            self.log.warning(
                "Reattaching to job %s submitted by try %s (%d/%d calls done) instead of submitting it again",
                previous.job.executor_id,
                previous.try_number,
                previous.done,
                previous.total,
            )
            job, state = previous.job, dict(previous.resume_state)
            state.pop("deadline", None)
        else:
            job = self.submit_spec(context, self.build_spec(context, config), deadline)
            state = self.first_stage_state()
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
        return job

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
        """Resume after the trigger fired: fetch results or fail with the remote errors."""
        self.remember_link_from_event(event)
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
    ) -> Any:
        """See :func:`pywren_deferrable.resume.finish_job`."""
        return finish_job(
            self._hook(),
            event,
            fetch=self.fetch_result if fetch is None else fetch,
            clean_data=self.clean_data,
            also_clean=also_clean,
            max_xcom_bytes=self.max_xcom_bytes,
            forget_key=forget_key,
            explain=self.explain_failure,
            log=self.log,
        )

    def payload_functions(self) -> list[Callable[..., Any]]:
        """The functions this operator ships to Lithops (subclasses name theirs)."""
        return []

    def explain_failure(self, report: str) -> str:
        """Point the remote tracebacks' ``<dynamic-code>`` frames at the DAG file."""
        return restore_filenames(report, code_index(self.payload_functions()))

    def shape_results(self, results: Any) -> Any:
        """Turn the list of call results into the task's return value."""
        return results
