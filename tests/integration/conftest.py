"""Fixtures to submit real Lithops jobs (localhost compute) against the local S3 endpoint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pywren_deferrable.config import build_config
from pywren_deferrable.job import JobRef
from pywren_deferrable.submit import JobSpec, submit_detached


def _kill_runner(job: JobRef) -> None:
    """SIGTERM first (the runner stops its job and removes its private TMPDIR), then SIGKILL."""
    if not job.runner_pid:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError, FileNotFoundError):
        os.kill(job.runner_pid, signal.SIGTERM)
        for _ in range(50):
            with open(f"/proc/{job.runner_pid}/stat") as stat:
                if stat.read().split()[2] == "Z":  # exited, not yet reaped
                    return
            time.sleep(0.1)
        os.killpg(job.runner_pid, signal.SIGKILL)  # the runner leads its own session


@pytest.fixture
def lithops_config(lithops_conn: str) -> dict[str, Any]:
    """The engine config the ``lithops_default`` Connection gives."""
    conn = json.loads(os.environ["AIRFLOW_CONN_LITHOPS_DEFAULT"])
    return build_config(conn["extra"], login=conn["login"], password=conn["password"])


@pytest.fixture
def submit_job(lithops_config: dict[str, Any]) -> Iterator[Callable[..., JobRef]]:
    """Submit a job through the detached runner; every runner is killed at teardown."""
    submitted: list[JobRef] = []

    def submit(
        function: Callable[..., Any],
        iterdata: Any,
        *,
        call_type: str = "map",
        config: dict[str, Any] | None = None,
        deadline: float | None = None,
        **options: Any,
    ) -> JobRef:
        spec = JobSpec(
            call_type=call_type,
            function=function,
            iterdata=iterdata,
            config=config or lithops_config,
            reduce_function=options.pop("reduce_function", None),
            options=options,
        )
        job = submit_detached(spec, deadline=deadline, name="test")
        submitted.append(job)
        return job

    yield submit
    for job in submitted:
        _kill_runner(job)
