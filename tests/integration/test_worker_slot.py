"""The worker slot is really freed: the task process exits while the calls still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pywren_deferrable.config import build_config, s3_credentials
from pywren_deferrable.job import JobRef
from pywren_deferrable.results import afetch_results
from pywren_deferrable.triggers.job import PyWrenJobTrigger
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.triggers.status import open_status_source

pytestmark = pytest.mark.integration

# What a worker's task process does: build the operator, execute it until it defers,
# then exit. It prints the trigger it deferred to.
TASK_PROCESS = textwrap.dedent(
    """
    import json
    from airflow.sdk.exceptions import TaskDeferred
    from payloads.functions import sleep_then
    from pywren_deferrable import PyWrenMapOperator

    op = PyWrenMapOperator(
        task_id="slow_map", map_function=sleep_then, map_iterdata=[1, 2, 3, 4], extra_params={"seconds": 6}
    )
    try:
        op.execute(context={})
    except TaskDeferred as deferred:
        print("TRIGGER=" + json.dumps(deferred.trigger.serialize()[1]))
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.engines
async def test_task_process_exits_while_calls_run(lithops_conn: str, engine: str) -> None:
    task = subprocess.run(
        [sys.executable, "-c", TASK_PROCESS], capture_output=True, text=True, timeout=180, check=False
    )
    assert task.returncode == 0, task.stderr[-3000:]
    line = next(x for x in task.stdout.splitlines() if x.startswith("TRIGGER="))
    trigger_kwargs = json.loads(line[len("TRIGGER=") :])
    job = JobRef.from_dict(trigger_kwargs["job"])
    conn = json.loads(os.environ["AIRFLOW_CONN_LITHOPS_DEFAULT"])
    config = build_config(conn["extra"], login=conn["login"], password=conn["password"])
    try:
        # The task process is gone; the calls (6 s each) are still running in the runner.
        async with open_status_source(job.storage, s3_credentials(config)) as source:
            progress = await JobPoller(job).poll(source)
        assert progress.done < progress.total == 4
        assert job.engine == engine
        assert job.runner_pid is not None and _alive(job.runner_pid)
        # ...and the job completes without the task process: the trigger sees it through.
        event = await PyWrenJobTrigger(**trigger_kwargs).wait_for_event()
        assert event.payload["status"] == "success"
        async with open_status_source(job.storage, s3_credentials(config)) as source:
            assert await afetch_results(source, job) == [1, 2, 3, 4]
    finally:
        if job.runner_pid and _alive(job.runner_pid):
            os.killpg(job.runner_pid, 9)
