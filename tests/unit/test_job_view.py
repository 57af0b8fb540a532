"""The "Lithops job" tab's parts that need no Airflow server: status parsing for the view,
the incremental per-job cache (against Lithops' localhost storage layout), pricing, the
page and its JSON. The tab inside a real api-server, with auth and a browser, is tested
in tests/e2e/test_job_tab.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from lithops_objects import write_call, write_job_files

from pywren_deferrable.job import JobRef, StorageLocation, call_id
from pywren_deferrable.pricing import DEFAULT_PRICES, gb_seconds, price_for
from pywren_deferrable.triggers.status import LocalStatusSource
from pywren_deferrable.ui.calls import (
    DONE,
    FAILED,
    RUNNING,
    CallRecord,
    count,
    duration_histogram,
    finished_record,
    table_order,
)
from pywren_deferrable.ui.reader import MAX_TRACEBACKS, JobCache, JobCalls
from pywren_deferrable.ui.record import JobRecord, job_xcom_key
from pywren_deferrable.ui.render import JobPanel, render_page, view_json

FIXTURES = Path(__file__).parent / "fixtures" / "lithops"
EXECUTOR = "a1b2c3-0"


def fixture(name: str) -> bytes:
    """A status.json written by a real Lithops 3.8 call (localhost backend)."""
    return (FIXTURES / name).read_bytes()


def test_a_real_status_gives_times_cold_start_activation_and_memory() -> None:
    raw = json.loads(fixture("status_done.json"))
    record = finished_record(fixture("status_done.json"), "M000", "00000")
    assert record.state == DONE
    assert record.start == raw["worker_start_tstamp"] and record.end == raw["worker_end_tstamp"]
    assert record.duration == pytest.approx(raw["worker_end_tstamp"] - raw["worker_start_tstamp"])
    assert record.cold is raw["worker_cold_start"] is True
    assert record.activation == raw["activation_id"]
    assert record.peak_memory == raw["worker_peak_memory_end"]
    assert record.error is None and record.traceback is None


def test_a_real_failed_status_gives_its_remote_traceback() -> None:
    record = finished_record(fixture("status_failed.json"), "M000", "00001")
    assert record.state == FAILED
    assert record.error == "ValueError: boom"
    assert record.traceback is not None and record.traceback.startswith("Traceback (most recent call last)")
    assert record.traceback.endswith("ValueError: boom")


def test_table_puts_failed_first_then_running_then_done() -> None:
    records = [
        CallRecord("M000", "00000", DONE),
        CallRecord("M000", "00003", FAILED),
        CallRecord("M000", "00001", RUNNING),
        CallRecord("M000", "00002", FAILED),
    ]
    assert [r.call_id for r in table_order(records)] == ["00002", "00003", "00001", "00000"]
    counts = count(records, total=6)
    assert (counts.done, counts.failed, counts.running, counts.pending) == (1, 2, 1, 2)


def test_histogram_bins_every_duration_once() -> None:
    durations = [0.1, 0.2, 0.2, 0.9, 1.0]
    histogram = duration_histogram(durations, bins=3)
    assert histogram is not None
    assert histogram.counts == [3, 0, 2] and sum(histogram.counts) == len(durations)
    assert duration_histogram([]) is None
    same = duration_histogram([2.0, 2.0])
    assert same is not None and sum(same.counts) == 2


def test_gb_seconds_and_cost() -> None:
    # 3 calls of 2 s at 512 MB: 3 GB-s.
    assert gb_seconds([2.0, 2.0, 2.0], 512) == pytest.approx(3.0)
    lam = price_for("aws_lambda", {})
    assert lam is DEFAULT_PRICES["aws_lambda"]
    assert lam.cost(3.0, 3) == pytest.approx(3 * 0.0000166667 + 3 * 0.2e-6)
    assert price_for("code_engine", None) is DEFAULT_PRICES["code_engine"]
    assert price_for("k8s", {}) is None


def test_the_connection_sets_a_price_flat_or_per_backend() -> None:
    flat = price_for("code_engine", {"job_price": {"gb_second": 0.00002, "currency": "EUR"}})
    assert flat is not None and (flat.gb_second, flat.currency) == (0.00002, "EUR")
    per = {"job_price": {"aws_lambda": {"gb_second": 0.00001, "per_call": 0.000001, "currency": "CHF"}}}
    chosen = price_for("aws_lambda", per)
    assert chosen is not None and (chosen.gb_second, chosen.per_call, chosen.currency) == (
        0.00001,
        1e-6,
        "CHF",
    )
    # A backend the per-backend table does not name keeps its default.
    assert price_for("code_engine", per) is DEFAULT_PRICES["code_engine"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"job_price": 3}, "'job_price' must be an object"),
        ({"job_price": {"gb_second": -1}}, "job_price.gb_second must be a non-negative number"),
        ({"job_price": {"aws_lambda": {"gb_second": "x"}}}, "job_price.aws_lambda.gb_second"),
        ({"job_price": {"gb_second": 1, "currency": ""}}, "job_price.currency"),
    ],
)
def test_a_malformed_price_names_the_setting(extra: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        price_for("aws_lambda", extra)


def test_the_job_record_round_trips_and_has_one_key_per_job() -> None:
    job = local_job("/tmp/x", 3)
    record = JobRecord(job, "lithops_default", 256, "localhost")
    assert JobRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    other = JobRef.from_dict({**job.to_dict(), "executor_id": "a1b2c3-1"})
    assert job_xcom_key(job) == "lithops_job:a1b2c3-0:M000" != job_xcom_key(other)
    with pytest.raises(ValueError):
        JobRecord.from_dict({"job": {}, "lithops_conn_id": "x"})


def local_job(root: str, calls: int) -> JobRef:
    return JobRef(
        executor_id=EXECUTOR,
        job_ids=("M000",),
        total_calls={"M000": calls},
        storage=StorageLocation(kind="localhost", bucket="bucket", backend="localhost", root=root),
        call_type="map",
        engine_version="3.8.0",
    )


async def test_refresh_reads_each_finished_status_once(tmp_path: Path) -> None:
    root = str(tmp_path)
    job = local_job(root, 5)
    write_job_files(root, "bucket", EXECUTOR, "M000")
    now = time.time()
    write_call(root, "bucket", EXECUTOR, "M000", call_id(0), value=1)
    write_call(root, "bucket", EXECUTOR, "M000", call_id(1), error="ValueError: boom on 1")
    write_call(root, "bucket", EXECUTOR, "M000", call_id(2), started=now - 3, running=True)
    source = LocalStatusSource(root, "bucket")
    calls = JobCalls(job, "M000")

    await calls.refresh(source)
    assert (calls.status_reads, sorted(calls.finished), sorted(calls.running)) == (
        2,
        ["00000", "00001"],
        ["00002"],
    )
    assert calls.running["00002"].start == pytest.approx(now - 3, abs=1)
    assert calls.running["00002"].activation == "0123456789ab"
    assert calls.finished["00001"].error == "ValueError: boom on 1"
    assert calls.watermark == "00001" and not calls.complete

    write_call(root, "bucket", EXECUTOR, "M000", call_id(2), value=2)
    write_call(root, "bucket", EXECUTOR, "M000", call_id(4), value=4)
    await calls.refresh(source)
    # Only the two new statuses were read; 00003 has not started: pending.
    assert calls.status_reads == 4 and calls.running == {} and calls.watermark == "00002"
    assert count(calls.records(), 5).pending == 1

    write_call(root, "bucket", EXECUTOR, "M000", call_id(3), value=3)
    await calls.refresh(source)
    assert calls.status_reads == 5 and calls.complete
    requests = source.requests
    # A complete job is never read again.
    await calls.update(lambda: pytest.fail("opened the storage of a complete job"), budget=1)
    assert source.requests == requests


async def test_a_job_keeps_a_bounded_number_of_tracebacks(tmp_path: Path) -> None:
    root = str(tmp_path)
    total = MAX_TRACEBACKS + 5
    job = local_job(root, total)
    for i in range(total):
        write_call(root, "bucket", EXECUTOR, "M000", call_id(i), error=f"ValueError: boom {i}")
    calls = JobCalls(job, "M000")
    await calls.refresh(LocalStatusSource(root, "bucket"))
    failed = list(calls.finished.values())
    assert len(failed) == total and all(r.error and r.error.startswith("ValueError: boom") for r in failed)
    assert sum(r.traceback is not None for r in failed) == MAX_TRACEBACKS


def test_the_cache_drops_the_least_recently_viewed_job(tmp_path: Path) -> None:
    cache = JobCache(max_jobs=2)
    jobs = [
        JobRef.from_dict({**local_job(str(tmp_path), 1).to_dict(), "executor_id": f"a1b2c3-{i}"})
        for i in range(3)
    ]
    first = cache.get(jobs[0], "M000")
    cache.get(jobs[1], "M000")
    assert cache.get(jobs[0], "M000") is first  # viewed again: now the most recent
    cache.get(jobs[2], "M000")
    assert len(cache) == 2
    assert cache.get(jobs[0], "M000") is first
    assert cache.get(jobs[1], "M000") is not None and len(cache) == 2
    with pytest.raises(ValueError, match="max_jobs"):
        JobCache(max_jobs=0)


async def test_page_and_json_show_counts_plot_failed_traceback_and_cost(tmp_path: Path) -> None:
    root = str(tmp_path)
    job = local_job(root, 4)
    for i in (0, 1, 3):
        write_call(root, "bucket", EXECUTOR, "M000", call_id(i), value=i)
    write_call(root, "bucket", EXECUTOR, "M000", call_id(2), error="ValueError: boom <on> 2")
    calls = JobCalls(job, "M000")
    await calls.refresh(LocalStatusSource(root, "bucket"))
    # write_call stamps every call with "now": give the calls real, distinct durations.
    for i, record in list(calls.finished.items()):
        start = 1000.0 + int(i)
        calls.finished[i] = CallRecord(
            **{**record.__dict__, "start": start, "end": start + 2.0, "cold": i == "00000"}
        )
    panel = JobPanel(
        JobRecord(job, "lithops_default", 1024, "aws_lambda"), calls, DEFAULT_PRICES["aws_lambda"]
    )

    data = view_json([panel])
    (summary,) = data["jobs"]
    assert (summary["done"], summary["failed"], summary["running"], summary["pending"]) == (3, 1, 0, 0)
    assert summary["gb_seconds"] == pytest.approx(8.0)  # 4 calls x 2 s x 1 GB
    assert summary["cost"]["amount"] == pytest.approx(8.0 * 0.0000166667 + 4 * 0.2e-6)
    assert summary["wall_seconds"] == pytest.approx(5.0)
    assert summary["calls"][0]["call"] == "M000/00002"  # the failed one first
    assert summary["calls"][0]["traceback"].endswith("ValueError: boom <on> 2")
    assert data["final"] is True

    page = render_page([panel], title="t", page_url="?dag_id=d")
    assert '<svg class="timeline"' in page and '<svg class="histogram"' in page
    assert 'class="bars-cold"' in page and 'class="bars-warm"' in page and 'class="bars-failed"' in page
    assert '<details class="tb"><summary>ValueError: boom &lt;on&gt; 2</summary>' in page  # escaped
    assert "boom <on>" not in page
    assert 'data-final="true"' in page
    assert "root" not in json.dumps(data) and root not in page  # no storage path or endpoint shown


def test_a_job_is_found_in_trigger_kwargs_or_a_jobref_return_value() -> None:
    from pywren_deferrable.ui.locate import _record_from_return_value, _record_from_trigger

    job = local_job("/tmp/x", 2)
    kwargs = {"job": job.to_dict(), "lithops_conn_id": "lithops_default", "poll_interval": 5}
    assert _record_from_trigger(kwargs) == JobRecord(job, "lithops_default")
    assert _record_from_trigger({"job": {"executor_id": "x/../"}, "lithops_conn_id": "c"}) is None
    assert _record_from_trigger({"job": job.to_dict()}) is None  # no Connection: not ours
    assert _record_from_return_value(job.to_dict(), "c") == JobRecord(job, "c")
    assert _record_from_return_value([1, 2], "c") is None
    assert _record_from_return_value(job.to_dict(), None) is None


def test_the_sensor_records_the_job_it_waits_for() -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from pywren_deferrable import PyWrenJobSensor

    class RecordingTI:
        def __init__(self) -> None:
            self.pushed: dict[str, object] = {}

        def xcom_push(self, key: str, value: object) -> None:
            self.pushed[key] = value

    job = local_job("/tmp/x", 2)
    ti = RecordingTI()
    sensor = PyWrenJobSensor(task_id="wait", job=job.to_dict(), lithops_conn_id="my_conn")
    with pytest.raises(TaskDeferred):
        sensor.execute({"ti": ti})
    assert JobRecord.from_dict(ti.pushed[job_xcom_key(job)]) == JobRecord(job, "my_conn")


async def test_a_cleaned_job_is_said_gone_not_pending_forever(tmp_path: Path) -> None:
    root = str(tmp_path)
    job = local_job(root, 2)
    source = LocalStatusSource(root, "bucket")
    calls = JobCalls(job, "M000")
    write_job_files(root, "bucket", EXECUTOR, "M000")  # submitted: aggdata.pickle is there
    await calls.refresh(source)
    assert not calls.empty
    cleaned = JobCalls(job, "M000")
    (tmp_path / "bucket" / "lithops.jobs" / f"{EXECUTOR}-M000" / "aggdata.pickle").unlink()
    await cleaned.refresh(source)
    assert cleaned.empty and not cleaned.complete
    record = JobRecord(job, "c", 256, "localhost")
    live = JobPanel(record, cleaned)
    assert view_json([live])["final"] is False
    gone = JobPanel(record, cleaned, gone=True)
    assert view_json([gone])["final"] is True and view_json([gone])["jobs"][0]["gone"] is True
    page = render_page([gone], title="t")
    assert "no longer in storage (clean_data=True" in page and 'data-final="true"' in page
