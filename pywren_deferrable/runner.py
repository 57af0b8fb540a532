"""Detached host of a job: ``python -m pywren_deferrable.runner SPEC HANDSHAKE``.

Hosts Lithops ``localhost`` jobs, and every pywren-ibm-cloud job (see
:mod:`pywren_deferrable.pywren_engine` for why).

Started by :func:`pywren_deferrable.submit.submit_detached` in its own session with its
output in a log file. It reads (and deletes, since it holds credentials) the pickled
job spec, submits the job through its engine, writes the job ids to HANDSHAKE
atomically, then stays alive while the job runs, stopping it at the
deadline. It imports no Airflow: the payload runs outside the task, like on a cloud.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Protocol

import cloudpickle

from pywren_deferrable.config import engine_of
from pywren_deferrable.job import ENGINE_PYWREN
from pywren_deferrable.submit import PRIVATE_TMPDIR_ENV, JobSpec, job_summary, run_on_executor

log = logging.getLogger("pywren_deferrable.runner")


def _write_atomically(path: str, payload: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(tmp, path)  # the submitter polls for the final name


def remove_private_tmpdir() -> None:
    """Delete the private TMPDIR the submitter gave this runner (see submit_detached)."""
    private_tmp = os.environ.get(PRIVATE_TMPDIR_ENV)
    if private_tmp and os.path.realpath(private_tmp) == os.path.realpath(tempfile.gettempdir()):
        shutil.rmtree(private_tmp, ignore_errors=True)


class HostedJob(Protocol):
    """What the runner needs of an engine to host one job."""

    def submit(self) -> dict[str, Any]:
        """Submit the job; return its summary (ids, call counts, engine version)."""
        ...

    def wait(self, deadline: float | None) -> bool:
        """Wait until the job ends (True) or ``deadline`` passes (False)."""
        ...

    def stop(self) -> None:
        """Stop the job's local processes."""
        ...


class LithopsHostedJob:
    """A Lithops ``localhost`` job: its calls run in child processes of this process."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.fexec: Any = None

    def submit(self) -> dict[str, Any]:
        import lithops

        self.fexec = lithops.FunctionExecutor(config=self.spec.config)
        futures = run_on_executor(self.fexec, self.spec)
        # Polling storage is the trigger's job; Lithops' own monitor would double the load.
        self.fexec.job_monitor.stop()
        return job_summary(self.fexec, futures)

    def wait(self, deadline: float | None) -> bool:
        # Lithops' job manager thread lives as long as the local job.
        manager = getattr(self.fexec.compute_handler, "job_manager", None)
        if not isinstance(manager, threading.Thread):
            return True
        manager.join(None if deadline is None else max(0.0, deadline - time.time()))
        return not manager.is_alive()

    def stop(self) -> None:
        # Lithops' localhost job processes run in sessions of their own, so they are
        # stopped through Lithops, not by signalling our process group.
        self.fexec.compute_handler.clear()


def hosted_job(spec: JobSpec) -> HostedJob:
    """The engine-specific host of ``spec`` (Lithops or pywren-ibm-cloud)."""
    if engine_of(spec.config) == ENGINE_PYWREN:
        from pywren_deferrable.pywren_engine import PywrenHostedJob

        return PywrenHostedJob(spec)
    return LithopsHostedJob(spec)


def host(spec: JobSpec, deadline: float | None, handshake_path: str) -> int:
    """Submit ``spec`` and keep its local job alive until it ends or ``deadline`` passes."""
    job = hosted_job(spec)
    try:
        summary = job.submit()
    except Exception as err:  # report to the waiting task instead of a silent exit
        traceback.print_exc()
        _write_atomically(handshake_path, {"error": f"{type(err).__name__}: {err}"})
        return 1

    def stop(signum: int, _frame: Any) -> None:
        # The task was killed (on_kill).
        log.warning("signal %d: stopping the local job", signum)
        job.stop()
        remove_private_tmpdir()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    _write_atomically(handshake_path, summary)
    log.info(
        "submitted %s jobs %s (%d calls)",
        summary["executor_id"],
        summary["job_ids"],
        sum(summary["total_calls"].values()),
    )
    if not job.wait(deadline):
        log.warning("deadline passed: stopping the local job")
        job.stop()
        return 2
    log.info("local job ended")
    return 0


def main(argv: list[str]) -> int:
    """Entry point: ``runner SPEC HANDSHAKE``."""
    if len(argv) != 2:
        print("usage: python -m pywren_deferrable.runner SPEC HANDSHAKE", file=sys.stderr)
        return 64
    spec_path, handshake_path = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    with open(spec_path, "rb") as handle:
        payload = cloudpickle.load(handle)
    os.remove(spec_path)
    try:
        return host(payload["spec"], payload["deadline"], handshake_path)
    finally:
        remove_private_tmpdir()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
