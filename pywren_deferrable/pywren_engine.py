"""The ``pywren`` engine on the worker: pywren-ibm-cloud 1.7.3 executors and the jobs they host.

pywren-ibm-cloud is the project Lithops grew out of; its last release (1.7.3, 2020) runs
on Python 3.10 at the newest (its bundled cloudpickle fails on 3.11, ``imp`` is gone in
3.12). Install it with ``pip install "pywren-deferrable[pywren]"`` on Python 3.10.

Everything the trigger needs (key layout, status format) lives in
:mod:`pywren_deferrable.job` and :mod:`pywren_deferrable.call_status_pywren`; this module
is only imported where the job is submitted: in the detached runner
(:mod:`pywren_deferrable.runner`), since a pywren executor keeps the calls beyond its
``workers`` in its own invoker process (fed as its job monitor sees calls end) and runs
``localhost`` calls in its own child processes. Its submitting process must therefore
live until the job ends, on every compute backend.
"""

from __future__ import annotations

import logging
import os
import time
from threading import Thread
from typing import Any

from pywren_deferrable.submit import JobSpec, summarize_futures

log = logging.getLogger(__name__)

# pywren builds executor ids from these variables of os.environ, and sets them itself:
# inherited from a parent that used pywren, they would give two tasks one executor id,
# and so the same job prefixes.
PYWREN_SESSION_ENV = ("PYWREN_EXECUTION_ID", "PYWREN_TOTAL_EXECUTORS")
# Lithops' option names (what the operators build) -> pywren 1.7.3's.
RENAMED_OPTIONS = {
    "obj_chunk_size": "chunk_size",
    "obj_chunk_number": "chunk_n",
    "obj_reduce_by_key": "reducer_one_per_object",
}
# pywren always submits the reducer with the maps (it waits for them remotely), which is
# what the operators ask of Lithops with spawn_reducer=0.
DROPPED_OPTIONS = frozenset({"spawn_reducer"})
DEFAULT_INVOKE_POOL_THREADS = 500  # pywren's map() default


def create_executor(config: dict[str, Any]) -> Any:
    """A pywren-ibm-cloud ``FunctionExecutor`` for ``config``, in a session of its own."""
    import pywren_ibm_cloud

    for key in PYWREN_SESSION_ENV:
        os.environ.pop(key, None)
    return pywren_ibm_cloud.function_executor(config=config)


def pywren_options(spec: JobSpec) -> dict[str, Any]:
    """The keyword arguments of pywren's ``call_async``/``map``/``map_reduce`` for ``spec``."""
    options = {RENAMED_OPTIONS.get(k, k): v for k, v in spec.options.items() if k not in DROPPED_OPTIONS}
    if spec.call_type != "call_async":
        # The operators pass it as a config override (Lithops reads it there); pywren's
        # map() takes it as an argument.
        threads = spec.config.get("pywren", {}).get("invoke_pool_threads")
        options["invoke_pool_threads"] = threads or DEFAULT_INVOKE_POOL_THREADS
    return options


def run_on_executor(fexec: Any, spec: JobSpec) -> list[Any]:
    """Submit ``spec`` on a pywren executor; return the futures of every job."""
    options = pywren_options(spec)
    if spec.call_type == "call_async":
        return [fexec.call_async(spec.function, spec.iterdata, **options)]
    if spec.call_type == "map":
        return list(fexec.map(spec.function, spec.iterdata, **options))
    return list(fexec.map_reduce(spec.function, spec.iterdata, spec.reduce_function, **options))


def job_summary(fexec: Any, futures: list[Any]) -> dict[str, Any]:
    """The summary of a pywren job (see :func:`pywren_deferrable.submit.summarize_futures`)."""
    import pywren_ibm_cloud

    return summarize_futures(fexec.executor_id, futures, pywren_ibm_cloud.__version__)


class PywrenHostedJob:
    """A pywren job hosted by the runner (see :class:`pywren_deferrable.runner.HostedJob`)."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.fexec: Any = None
        self.futures: list[Any] = []

    def submit(self) -> dict[str, Any]:
        self.fexec = create_executor(self.spec.config)
        self.futures = run_on_executor(self.fexec, self.spec)
        return job_summary(self.fexec, self.futures)

    def wait(self, deadline: float | None) -> bool:
        if not self._join_job_monitors(deadline):
            return False
        # Every call ended: end the invoker and the localhost worker processes, or this
        # process would not exit.
        self.stop()
        return True

    def _join_job_monitors(self, deadline: float | None) -> bool:
        """Wait for every call to end: False when ``deadline`` passed first."""
        # pywren's invoker already watches each job's status objects, in one monitor
        # thread per job that ends when all its calls did (it frees invocation slots as
        # calls end). Joining those threads adds no storage requests to the trigger's.
        monitors = [
            t for t in getattr(self.fexec.invoker.job_monitor, "monitors", []) if isinstance(t, Thread)
        ]
        if monitors:
            for monitor in monitors:
                monitor.join(None if deadline is None else max(0.0, deadline - time.time()))
                if monitor.is_alive():
                    return False
            return True
        # With remote_invoker there is no local monitor: pywren's own wait() polls the
        # status objects (every second); its timeout is a SIGALRM, in whole seconds.
        timeout = None if deadline is None else max(1, int(deadline - time.time()))
        try:
            self.fexec.wait(fs=self.futures, throw_except=False, download_results=False, timeout=timeout)
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        self.fexec.invoker.stop()
        for handler in self.fexec.invoker.compute_handlers:
            backend = getattr(handler, "compute_handler", None)
            close = getattr(backend, "close", None)  # localhost: ends its worker processes
            if callable(close):
                close()
