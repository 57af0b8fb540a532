"""PyWrenJobTrigger against real jobs (Lithops, and pywren-ibm-cloud for the tests marked
``engines``) on a real S3 endpoint (and localhost storage)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from payloads.functions import add, big_result, fail_on, nothing, sleep_then

from pywren_deferrable.config import build_lithops_config, s3_credentials
from pywren_deferrable.job import JobRef
from pywren_deferrable.results import JobFailedError, ResultMissingError, afetch_results
from pywren_deferrable.triggers.job import PyWrenJobTrigger
from pywren_deferrable.triggers.status import open_status_source

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parent.parent / "unit" / "fixtures" / "lithops_futures"


async def first_event(job: JobRef, **kwargs: Any) -> dict[str, Any]:
    trigger = PyWrenJobTrigger(job=job.to_dict(), **kwargs)
    # Round-trip through serialize() as the triggerer does.
    classpath, trigger_kwargs = trigger.serialize()
    assert classpath == "pywren_deferrable.triggers.job.PyWrenJobTrigger"
    async for event in PyWrenJobTrigger(**trigger_kwargs).run():
        return dict(event.payload)
    raise AssertionError("no event")


async def fetch(job: JobRef, config: dict[str, Any]) -> list[Any]:
    async with open_status_source(job.storage, s3_credentials(config)) as source:
        return await afetch_results(source, job)


@pytest.mark.engines
async def test_success_event_and_results(submit_job, lithops_config) -> None:
    job = submit_job(add, [{"x": i} for i in range(1, 6)], extra_args={"y": 10})
    event = await first_event(job, poll_interval=1)
    assert event["status"] == "success"
    assert (event["done"], event["total"]) == (5, 5)
    assert await fetch(job, lithops_config) == [11, 12, 13, 14, 15]


@pytest.mark.engines
async def test_failed_call_is_named_with_its_remote_error(submit_job, lithops_config) -> None:
    job = submit_job(fail_on, [1, 2, 3, 4, 5, 6])
    event = await first_event(job, poll_interval=1, fail_fast=False)
    assert event["status"] == "failed"
    assert event["failed_calls"] == {"M000": ["00002"]}
    assert event["error"] == "ValueError: boom on 3"
    assert "M000/00002" in event["message"]
    with pytest.raises(JobFailedError, match=r"(?s)00002.*Traceback.*ValueError: boom on 3"):
        await fetch(job, lithops_config)


@pytest.mark.engines
async def test_deadline_gives_timeout_with_progress(submit_job) -> None:
    job = submit_job(sleep_then, [(1, 60), (2, 60)])
    event = await first_event(job, poll_interval=1, deadline=time.time() + 3)
    assert event["status"] == "timeout"
    assert event["done"] == 0
    assert event["total"] == 2
    assert "0/2 calls done" in event["message"]


@pytest.mark.engines
async def test_progress_is_logged(submit_job, capfd: pytest.CaptureFixture[str]) -> None:
    # Airflow 3 routes logging through structlog, which writes to stdout here.
    job = submit_job(add, [1, 2, 3])
    event = await first_event(job, poll_interval=1)
    assert event["status"] == "success"
    assert "job M000: 3/3 done, 0 running, 0 failed" in capfd.readouterr().out


@pytest.mark.engines
async def test_large_results_come_from_output_objects(submit_job, lithops_config) -> None:
    job = submit_job(big_result, [1, 2])
    assert (await first_event(job, poll_interval=1))["status"] == "success"
    results = await fetch(job, lithops_config)
    assert results == ["1" * 20000, "2" * 20000]


async def test_a_success_status_whose_output_object_is_missing_fails_naming_the_call(
    submit_job, lithops_config
) -> None:
    """Lithops' worker can report success for a call whose result never reached storage
    (its JobRunner shares the handler's pooled TLS connections after the fork, see
    docs/failure-modes.md): the results fail naming the call instead of giving None."""
    job = submit_job(big_result, [1, 2])
    assert (await first_event(job, poll_interval=1))["status"] == "success"
    async with open_status_source(job.storage, s3_credentials(lithops_config)) as source:
        assert await source.delete([f"lithops.jobs/{job.executor_id}-M000/00001/output.pickle"]) == 1
    with pytest.raises(ResultMissingError, match=r"job M000: call 00001 has no output.pickle"):
        await fetch(job, lithops_config)


@pytest.mark.engines
async def test_none_results(submit_job, lithops_config) -> None:
    job = submit_job(nothing, [1, 2])
    assert (await first_event(job, poll_interval=1))["status"] == "success"
    assert await fetch(job, lithops_config) == [None, None]


async def test_localhost_storage_is_polled_too(submit_job) -> None:
    config = build_lithops_config({"lithops": {"backend": "localhost", "storage": "localhost"}})
    job = submit_job(add, [(1, 2), (3, 4)], config=config)
    assert job.storage.kind == "localhost"
    event = await first_event(job, poll_interval=1)
    assert event["status"] == "success"
    async with open_status_source(job.storage, None) as source:
        assert await afetch_results(source, job) == [3, 7]


@pytest.mark.engines
def test_trigger_imports_no_engine(engine: str) -> None:
    """The triggerer needs neither Lithops nor pywren: importing the trigger and parsing
    either engine's status loads neither (checked where the engine is installed)."""
    module = {"lithops": "lithops", "pywren": "pywren_ibm_cloud"}[engine]
    # A real Lithops status of a call that returned futures (its new_futures is a pickle
    # naming lithops.future.ResponseFuture): reading it must not import Lithops either.
    futures_status = next(
        p for p in (FIXTURES / "futures-fixture").rglob("status.json") if b"new_futures" in p.read_bytes()
    )
    code = (
        "import sys, pywren_deferrable.triggers.job as t, pywren_deferrable.hooks.lithops\n"
        "from pywren_deferrable.call_status import parse_call_status\n"
        "parse_call_status(b'{\"exception\": false, \"result\": true}', '00000', 'pywren')\n"
        "parse_call_status(b'{\"exception\": false, \"func_result_size\": 0}', '00000', 'lithops')\n"
        f"assert parse_call_status(open({str(futures_status)!r}, 'rb').read(), '00000', 'lithops').new_futures\n"
        f"print({module!r} in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
