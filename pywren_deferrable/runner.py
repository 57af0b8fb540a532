"""Detached host of a Lithops ``localhost`` job: ``python -m pywren_deferrable.runner SPEC HANDSHAKE``.

Started by :func:`pywren_deferrable.submit.submit_detached` in its own session with its
output in a log file. It reads (and deletes, since it holds credentials) the pickled
job spec, submits the job through Lithops, writes the job ids to HANDSHAKE
atomically, then stays alive while Lithops' local job runs, stopping it at the
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
from typing import Any

import cloudpickle

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


def _job_threads(fexec: Any) -> list[threading.Thread]:
    """The threads that keep Lithops' local job alive (its job manager)."""
    manager = getattr(fexec.compute_handler, "job_manager", None)
    return [manager] if isinstance(manager, threading.Thread) else []


def host(spec: JobSpec, deadline: float | None, handshake_path: str) -> int:
    """Submit ``spec`` and keep its local job alive until it ends or ``deadline`` passes."""
    import lithops

    try:
        fexec = lithops.FunctionExecutor(config=spec.config)
        futures = run_on_executor(fexec, spec)
    except Exception as err:  # report to the waiting task instead of a silent exit
        traceback.print_exc()
        _write_atomically(handshake_path, {"error": f"{type(err).__name__}: {err}"})
        return 1
    # Polling storage is the trigger's job; Lithops' own monitor would double the load.
    fexec.job_monitor.stop()

    def stop(signum: int, _frame: Any) -> None:
        # The task was killed (on_kill): Lithops' localhost job processes run in sessions
        # of their own, so they are stopped through Lithops, not by signalling our group.
        log.warning("signal %d: stopping the local job", signum)
        fexec.compute_handler.clear()
        remove_private_tmpdir()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    summary = job_summary(fexec, futures)
    _write_atomically(handshake_path, summary)
    log.info("submitted %s jobs %s (%d calls)", summary["executor_id"], summary["job_ids"], len(futures))
    for thread in _job_threads(fexec):
        remaining = None if deadline is None else max(0.0, deadline - time.time())
        thread.join(remaining)
        if thread.is_alive():
            log.warning("deadline passed: stopping the local job")
            fexec.compute_handler.clear()
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
