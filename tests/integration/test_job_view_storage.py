"""The job tab's storage side on a real job: the operator records its job for the tab,
and the tab's reader follows it through the Connection on the local S3 endpoint, reading
each finished status once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from payloads.functions import sleep_then

from pywren_deferrable import PyWrenMapOperator
from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY
from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.job import JobRef
from pywren_deferrable.ui.calls import DONE, count
from pywren_deferrable.ui.reader import JobCache
from pywren_deferrable.ui.record import JobRecord, job_xcom_key

pytestmark = pytest.mark.integration


class RecordingTI:
    """Just enough of a task instance to see what the operator pushes."""

    dag_id = "test_dag"

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


async def test_the_operator_records_its_job_and_the_tab_follows_it(lithops_conn: str) -> None:
    ti = RecordingTI()
    op = PyWrenMapOperator(
        task_id="t",
        map_function=sleep_then,
        map_iterdata=[1, 2, 3],
        extra_params={"seconds": 1},
        runtime_memory=512,
        wait_for_result=False,
    )
    job = JobRef.from_dict(await asyncio.to_thread(op.execute, {"ti": ti}))
    raw = ti.pushed[job_xcom_key(job)]
    text = json.dumps(raw)  # what XCom stores
    assert EMBEDDED_ACCESS_KEY not in text and EMBEDDED_SECRET_KEY not in text
    record = JobRecord.from_dict(json.loads(text))
    assert record == JobRecord(job, lithops_conn, 512, "localhost")

    hook = LithopsHook(lithops_conn_id=record.lithops_conn_id)
    calls = JobCache().get(record.job, "M000")
    give_up = time.monotonic() + 120
    while not calls.complete:
        assert time.monotonic() < give_up, f"job not finished: {calls}"
        await calls.update(lambda: hook.astatus_source(record.job.storage), budget=5)
        await asyncio.sleep(0.5)
    assert calls.error is None
    assert count(calls.records(), 3).done == 3 and all(r.state == DONE for r in calls.records())
    assert all(r.duration is not None and r.duration >= 1 for r in calls.records())
    # Each status was read exactly once, however many refreshes it took.
    assert calls.status_reads == 3
    await calls.update(lambda: pytest.fail("a complete job was read again"), budget=1)
