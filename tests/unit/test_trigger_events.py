"""PyWrenJobTrigger's events and its handling of storage errors, on localhost storage."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from lithops_objects import write_call

from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.job import JobRef, StorageLocation
from pywren_deferrable.triggers import job as trigger_module
from pywren_deferrable.triggers.job import PyWrenJobTrigger, is_transient
from pywren_deferrable.triggers.status import LocalStatusSource

EXEC = "abc123-0"
BUCKET = "storage"


def make_job(root: str, total: int) -> dict[str, Any]:
    storage = StorageLocation(kind="localhost", bucket=BUCKET, backend="localhost", root=root)
    return JobRef(EXEC, ("M000",), {"M000": total}, storage, "map", "3.8.0").to_dict()


class FlakySource(LocalStatusSource):
    """Fails the first ``failures`` listings with ``error``."""

    def __init__(self, root: str, failures: int, error: Exception) -> None:
        super().__init__(root, BUCKET)
        self.failures, self.error, self.calls = failures, error, 0

    def list_objects(self, prefix: str, start_after: str = ""):  # type: ignore[override]
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return super().list_objects(prefix, start_after)


@pytest.fixture
def use_source(monkeypatch: pytest.MonkeyPatch):
    def install(source: Any) -> None:
        @contextlib.asynccontextmanager
        async def fake(self: LithopsHook, location: Any):
            yield source

        monkeypatch.setattr(LithopsHook, "astatus_source", fake)

    return install


def test_transient_classification() -> None:
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ClientError({"Error": {"Code": "SlowDown"}}, "ListObjectsV2"))
    assert is_transient(
        ClientError({"Error": {"Code": "X"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    )
    assert not is_transient(
        ClientError(
            {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject"
        )
    )
    assert not is_transient(ValueError("x"))


async def test_outage_shorter_than_max_outage_is_survived(tmp_path, use_source) -> None:
    root = str(tmp_path)
    write_call(root, BUCKET, EXEC, "M000", "00000", value=1)
    source = FlakySource(root, 2, EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    use_source(source)
    event = await PyWrenJobTrigger(job=make_job(root, 1), poll_interval=0.1, max_outage=60).wait_for_event()
    assert event.payload["status"] == "success"
    assert source.calls == 3


async def test_outage_longer_than_max_outage_fails_with_a_message(tmp_path, use_source) -> None:
    source = FlakySource(str(tmp_path), 10**6, EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    use_source(source)
    event = await PyWrenJobTrigger(
        job=make_job(str(tmp_path), 1), poll_interval=0.1, max_outage=1.5
    ).wait_for_event()
    assert event.payload["status"] == "error"
    assert "storage unreachable for more than 2s (max_outage)" in event.payload["message"]


async def test_non_transient_errors_are_raised(tmp_path, use_source) -> None:
    denied = ClientError(
        {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "List"
    )
    use_source(FlakySource(str(tmp_path), 1, denied))
    with pytest.raises(ClientError, match="AccessDenied"):
        await PyWrenJobTrigger(job=make_job(str(tmp_path), 1), poll_interval=0.1).wait_for_event()


async def test_fail_fast_fires_on_the_first_failure(tmp_path, use_source) -> None:
    root = str(tmp_path)
    write_call(root, BUCKET, EXEC, "M000", "00000", value=1)
    write_call(root, BUCKET, EXEC, "M000", "00001", error="KeyError: 'k'")
    write_call(root, BUCKET, EXEC, "M000", "00002", running=True)
    use_source(LocalStatusSource(root, BUCKET))
    event = (await PyWrenJobTrigger(job=make_job(root, 3), poll_interval=0.1).wait_for_event()).payload
    assert event["status"] == "failed"
    assert event["failed_calls"] == {"M000": ["00001"]}
    assert event["call_errors"] == {"M000/00001": "KeyError: 'k'"}
    assert (event["done"], event["total"]) == (2, 3)


async def test_deadline_gives_a_timeout_event(tmp_path, use_source) -> None:
    root = str(tmp_path)
    write_call(root, BUCKET, EXEC, "M000", "00000", value=1)
    use_source(LocalStatusSource(root, BUCKET))
    trigger = PyWrenJobTrigger(job=make_job(root, 2), poll_interval=0.2, deadline=time.time() + 0.5)
    event = (await trigger.wait_for_event()).payload
    assert event["status"] == "timeout"
    assert event["message"] == "deadline passed with 1/2 calls done"


def test_serialize_round_trip_keeps_every_argument(tmp_path) -> None:
    trigger = PyWrenJobTrigger(
        job=make_job(str(tmp_path), 2),
        lithops_conn_id="c",
        poll_interval=3,
        deadline=123.0,
        fail_fast=False,
        max_outage=7,
        resume_state={"phase": "map"},
        clean_data=True,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == f"{trigger_module.__name__}.PyWrenJobTrigger"
    again = PyWrenJobTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["resume_state"] == {"phase": "map"} and kwargs["clean_data"] is True


async def test_bad_job_gives_an_error_event_instead_of_failing_to_inflate(tmp_path) -> None:
    """Airflow 3.3's triggerer stops running *every* trigger after one fails to inflate."""
    job = make_job(str(tmp_path), 1)
    job["executor_id"] = "../../etc"
    trigger = PyWrenJobTrigger(job=job)
    assert trigger.serialize()[1]["job"] == job
    event = (await trigger.wait_for_event()).payload
    assert event["status"] == "error"
    assert "invalid job reference" in event["message"] and "executor_id" in event["message"]
    await trigger.on_kill()  # nothing to stop, and no crash


def test_job_from_a_newer_or_older_version_still_loads(tmp_path) -> None:
    job = make_job(str(tmp_path), 1)
    job["added_in_a_later_version"] = {"x": 1}
    job["storage"]["also_new"] = True
    trigger = PyWrenJobTrigger(job=job)
    assert trigger.invalid is None
    assert trigger.job.total_calls == {"M000": 1}
