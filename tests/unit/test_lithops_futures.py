"""Functions that return Lithops futures, on the objects real Lithops 3.8 jobs wrote.

The fixtures (``fixtures/lithops_futures``, made by its ``capture.py``) hold seven real
jobs whose functions returned futures (one future, a list, a ``map_reduce``'s, two
levels, a failing inner call, a map mixing values and futures) and what Lithops' own
``get_result()`` returned for each. Every test here reads those objects through the
provider's own code (static reading, poller, fetcher, cleaner) and compares.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

from pywren_deferrable.call_status import (
    CallStatus,
    StatusParseError,
    parse_followed_status,
    parse_status,
)
from pywren_deferrable.job import (
    JobRef,
    StorageLocation,
    call_id,
    is_child_executor,
    split_job_key,
    validate_executor_id,
)
from pywren_deferrable.lithops_futures import (
    FutureRef,
    FuturesParseError,
    check_children,
    read_new_futures,
    result_order,
)
from pywren_deferrable.reduce_stage import load_map_results
from pywren_deferrable.results import (
    JobFailedError,
    aclean_job,
    afailure_report,
    afetch_results,
    aresult_locations,
)
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.triggers.status import LocalStatusSource

FIXTURES = Path(__file__).parent / "fixtures" / "lithops_futures"
CASES: dict[str, Any] = json.loads((FIXTURES / "cases.json").read_text())["cases"]
# The captured bucket, as a directory under FIXTURES (Lithops' localhost storage layout):
# the futures name it, and the provider follows only futures in the job's own bucket.
TREE = CAPTURED_BUCKET = json.loads((FIXTURES / "cases.json").read_text())["bucket"]
JOB_IDS = {"map": "M000", "call_async": "A000"}


def all_statuses() -> list[Path]:
    return sorted((FIXTURES / TREE).rglob("status.json"))


def with_futures() -> list[Path]:
    return [p for p in all_statuses() if "new_futures" in json.loads(p.read_bytes())]


def case_job(name: str, root: str | Path = FIXTURES, bucket: str = TREE) -> JobRef:
    case = CASES[name]
    job_id = JOB_IDS[case["call_type"]]
    calls = len(
        {
            p.parent.name
            for p in (Path(root) / bucket / "lithops.jobs" / f"{case['executor_id']}-{job_id}").glob(
                "*/status.json"
            )
        }
    )
    return JobRef(
        executor_id=case["executor_id"],
        job_ids=(job_id,),
        total_calls={job_id: calls},
        storage=StorageLocation(kind="localhost", bucket=bucket, backend="localhost", root=str(root)),
        call_type=case["call_type"],
        engine_version="3.8.0",
    )


def shaped(job: JobRef, results: list[Any]) -> Any:
    """What get_result() returns from the results list (``lithops/executors.py``)."""
    return results[0] if len(results) == 1 and job.call_type != "map" else results


# -- static reading ----------------------------------------------------------------------


def test_the_fixtures_hold_every_shape() -> None:
    assert len(with_futures()) >= 7
    assert {c.get("result", c.get("error")) for c in CASES.values()} >= {"70", "30", "[50]"}


@pytest.mark.parametrize("path", with_futures(), ids=lambda p: "/".join(p.parts[-3:-1]))
def test_static_reading_equals_lithops_unpickling(path: Path) -> None:
    """What the walk reads is what Lithops' client gets by unpickling (this test process
    may import Lithops; the triggerer never does)."""
    pytest.importorskip("lithops")
    data = json.loads(path.read_bytes())
    pickled = ast.literal_eval(data["new_futures"])
    loaded = pickle.loads(pickled)
    loaded = [loaded] if not isinstance(loaded, list) else list(loaded)
    expected = tuple(
        FutureRef(f.executor_id, f.job_id, f.call_id, f._produce_output and not f._read) for f in loaded
    )
    assert read_new_futures(pickled, bucket=CAPTURED_BUCKET) == expected
    # And each returned future is a job of the call that returned it, present in storage.
    parent = FutureRef(data["executor_id"], data["job_id"], data["call_id"])
    check_children(expected, parent)
    for future in expected:
        assert (FIXTURES / TREE / "lithops.jobs" / future.job_key / future.call_id / "status.json").exists()


def test_parse_status_reads_the_futures_and_no_result() -> None:
    path = (
        FIXTURES
        / TREE
        / "lithops.jobs"
        / f"{CASES['call_async']['executor_id']}-A000"
        / "00000"
        / "status.json"
    )
    status = parse_status(path.read_bytes(), "00000", CAPTURED_BUCKET)
    assert status.failed is False
    assert (status.inline_result, status.has_output_object) == (None, False)
    assert [f.name for f in status.new_futures] == [
        f"{CASES['call_async']['executor_id']}-A000-00000-2-A000/00000"
    ]


def _future_pickle(protocol: int, **state: Any) -> bytes:
    """A real pickle of a real Lithops ResponseFuture (built without a job)."""
    from lithops.future import ResponseFuture

    future = ResponseFuture.__new__(ResponseFuture)
    future.__dict__.update(
        {
            "call_id": "00001",
            "job_id": "M000",
            "executor_id": "a1b2c3-0-A000-00000-1",
            "_produce_output": True,
            "_read": False,
            "_storage_path": ["minio", "bkt"],
            **state,
        }
    )
    return pickle.dumps(future, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_and_a_chained_futures_list(protocol: int) -> None:
    pytest.importorskip("lithops")
    from lithops.future import ResponseFuture
    from lithops.utils import FuturesList

    one = pickle.loads(_future_pickle(protocol))
    assert read_new_futures(pickle.dumps(one, protocol=protocol)) == (
        FutureRef("a1b2c3-0-A000-00000-1", "M000", "00001"),
    )
    first = pickle.loads(_future_pickle(protocol, call_id="00000", job_id="M000"))
    last = pickle.loads(_future_pickle(protocol, call_id="00000", job_id="M001"))
    chained = FuturesList([first])
    chained._extend_futures([last])  # what FuturesList.map() does: alt_list keeps M000
    assert isinstance(chained[0], ResponseFuture)
    got = read_new_futures(pickle.dumps(chained, protocol=protocol))
    # As Lithops' client: only the list's items (the chain's last job) are followed.
    assert got == tuple(
        FutureRef(f.executor_id, f.job_id, f.call_id, f._produce_output)
        for f in pickle.loads(pickle.dumps(chained))
    )
    assert [f.job_id for f in got] == ["M001"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"not a pickle", "not a readable pickle"),
        (pickle.dumps([]), "holds no future"),
        (pickle.dumps((1, 2)), "not Lithops futures"),
        (pickle.dumps({"a": 1}), "not Lithops futures"),
        (pickle.dumps(None), "not Lithops futures"),
    ],
)
def test_what_is_not_futures_is_refused(value: bytes, says: str) -> None:
    with pytest.raises(FuturesParseError, match=says):
        read_new_futures(value)


def test_a_list_mixing_futures_and_values_is_refused() -> None:
    pytest.importorskip("lithops")
    future = pickle.loads(_future_pickle(4))
    with pytest.raises(FuturesParseError, match="something other than a Lithops future"):
        read_new_futures(pickle.dumps([future, 5]))


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ({"executor_id": "../x"}, "executor id"),
        ({"job_id": "X000"}, "job id"),
        ({"call_id": "1"}, "not a Lithops call id"),
        ({"call_id": 7}, "no call_id string"),
        ({"_storage_path": ["minio", "elsewhere"]}, "bucket 'elsewhere', not in the job's bucket 'bkt'"),
    ],
)
def test_futures_we_cannot_follow_with_certainty_are_refused(state: dict[str, Any], says: str) -> None:
    pytest.importorskip("lithops")
    with pytest.raises(FuturesParseError, match=says):
        read_new_futures(_future_pickle(4, **state), bucket="bkt")


def test_futures_of_an_executor_the_call_did_not_create_fail_the_call() -> None:
    pytest.importorskip("lithops")
    raw = json.dumps(
        {
            "exception": False,
            "func_result_size": 0.0,
            "new_futures": repr(_future_pickle(4)),
            "call_id": "00003",
        }
    )
    # a1b2c3-0-A000-00000-1 was created by call A000/00000, not by M000/00003.
    status = parse_followed_status(raw, FutureRef("a1b2c3-0", "M000", "00003"), "lithops", None)
    assert status.failed
    assert "returned a future of executor a1b2c3-0-A000-00000-1, which that call did not create" in (
        status.error or ""
    )
    own = parse_followed_status(raw, FutureRef("a1b2c3-0", "A000", "00000"), "lithops", None)
    assert not own.failed and own.new_futures


def test_unreadable_new_futures_fail_the_call_with_a_clear_message_not_none() -> None:
    raw = json.dumps({"exception": False, "func_result_size": 0.0, "new_futures": repr(b"\x80\x04garbage")})
    with pytest.raises(
        StatusParseError, match="call 00000 returned Lithops futures that this provider cannot follow"
    ):
        parse_status(raw, "00000")
    status = parse_followed_status(raw, FutureRef("a1b2c3-0", "M000", "00000"), "lithops", None)
    assert status.failed and "cannot follow" in (status.error or "")


# -- result order, fetch, failure ---------------------------------------------------------


def _read_tree(future: FutureRef) -> CallStatus:
    path = FIXTURES / TREE / "lithops.jobs" / future.job_key / future.call_id / "status.json"
    return parse_followed_status(path.read_bytes(), future, "lithops", CAPTURED_BUCKET)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if "result" in c])
def test_result_order_gives_what_get_result_gave(name: str) -> None:
    job = case_job(name)
    job_id = job.result_job_id
    order = result_order(
        [FutureRef(job.executor_id, job_id, call_id(i)) for i in range(job.total_calls[job_id])]
    )
    statuses: dict[FutureRef, CallStatus] = {}
    try:
        level = next(order)
        while True:
            read = [_read_tree(f) for f in level]
            statuses.update(zip(level, read, strict=True))
            level = order.send(read)
    except StopIteration as done:
        leaves, failed = done.value
    assert failed == []
    inline = [statuses[leaf.future].inline_result for leaf in leaves]
    assert None not in inline  # every fixture result is small
    results = [pickle.loads(raw) for raw in inline if raw is not None]
    assert repr(shaped(job, results)) == CASES[name]["result"]


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if "result" in c])
async def test_fetch_gives_what_get_result_gave(name: str) -> None:
    """The test that would have caught the silent None: the task's results of a job
    whose functions returned futures are the inner jobs' results."""
    job = case_job(name)
    results = await afetch_results(LocalStatusSource(str(FIXTURES), TREE), job)
    assert repr(shaped(job, results)) == CASES[name]["result"]
    assert None not in results


async def test_locations_point_at_the_inner_calls() -> None:
    job = case_job("map_reduce_inside")
    locations = await aresult_locations(LocalStatusSource(str(FIXTURES), TREE), job)
    inner = f"{CASES['map_reduce_inside']['executor_id']}-A000-00000-"
    assert len(locations) == 1  # the reducer: the map futures of a map_reduce give no output
    assert (
        locations[0].status_key.startswith(f"lithops.jobs/{inner}")
        and "-R000/00000/" in locations[0].status_key
    )


async def test_a_failing_inner_call_fails_with_its_traceback_naming_it() -> None:
    job = case_job("inner_fails")
    inner = f"{CASES['inner_fails']['executor_id']}-A000-00000-6-M000"
    with pytest.raises(JobFailedError) as raised:
        await afetch_results(LocalStatusSource(str(FIXTURES), TREE), job)
    message = str(raised.value)
    assert f"1 call(s) of job {inner} (futures returned by call A000/00000) failed: 00002" in message
    assert "Traceback" in message and "ValueError: inner boom 2" in message


def test_the_reducer_gets_the_inner_results() -> None:
    """The reducer of reducer_wait_local reads map results with the engine's storage client."""

    class TreeStorage:
        def get_object(self, bucket: str, key: str) -> bytes:
            assert bucket == TREE
            return (FIXTURES / TREE / key).read_bytes()

    job = case_job("mixed")
    assert repr(load_map_results(job, TreeStorage())) == CASES["mixed"]["result"]
    with pytest.raises(RuntimeError, match=r"map call .*-M000/00002 failed: ValueError: inner boom 2"):
        load_map_results(case_job("inner_fails"), TreeStorage())


# -- the poller ---------------------------------------------------------------------------


async def test_poller_follows_inner_jobs_counts_them_and_rebuilds_after_a_restart() -> None:
    job = case_job("nested")  # one call -> a map of 2 -> maps of 1 and 2: 1 + 2 + 3 calls
    source = LocalStatusSource(str(FIXTURES), TREE)
    result = await JobPoller(job).poll(source)
    assert result.complete and not result.failed
    assert (result.done, result.total, result.inner_calls) == (6, 6, 5)
    assert "3 inner job(s) (futures returned by calls): 5/5 done, 0 failed" in result.summary()
    # A fresh poller (a triggerer restart, a second trigger in HA) finds the same from storage.
    again = await JobPoller(job).poll(source)
    assert [(j.name, sorted(j.done)) for j in again.jobs] == [(j.name, sorted(j.done)) for j in result.jobs]


async def test_poller_waits_for_inner_calls_not_yet_written(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / TREE, tmp_path / TREE)
    job = case_job("map", tmp_path)
    inner = tmp_path / TREE / "lithops.jobs" / f"{CASES['map']['executor_id']}-M000-00001-1-M000" / "00002"
    status = inner / "status.json"
    saved = status.read_bytes()
    status.unlink()
    source = LocalStatusSource(str(tmp_path), TREE)
    poller = JobPoller(job)
    first = await poller.poll(source)
    assert not first.complete
    assert (first.done, first.total) == (6, 7)  # 2 outer calls, 2 + 3 inner, one pending
    status.write_bytes(saved)
    second = await poller.poll(source)
    assert second.complete and (second.done, second.total, second.new_done) == (7, 7, 1)


async def test_poller_reports_the_failed_inner_call_by_its_job_key() -> None:
    job = case_job("inner_fails")
    result = await JobPoller(job).poll(LocalStatusSource(str(FIXTURES), TREE))
    inner = f"{CASES['inner_fails']['executor_id']}-A000-00000-6-M000"
    assert result.complete
    assert list(result.failed) == [inner]
    assert result.failed[inner]["00002"].error == "ValueError: inner boom 2"


# -- cleanup ------------------------------------------------------------------------------


def _keys(root: Path) -> set[str]:
    return {
        str(p.relative_to(root / TREE)).replace(os.sep, "/") for p in (root / TREE).rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("name", ["nested", "map_reduce_inside", "map"])
async def test_clean_deletes_the_inner_jobs_and_nothing_of_the_other_jobs(tmp_path: Path, name: str) -> None:
    shutil.copytree(FIXTURES / TREE, tmp_path / TREE)
    before = _keys(tmp_path)
    job = case_job(name, tmp_path)
    ours = {k for k in before if k.startswith(f"lithops.jobs/{job.executor_id}-")}
    assert any("-M000-00" in k or "-A000-00" in k for k in ours)  # inner jobs are among them
    deleted = await aclean_job(LocalStatusSource(str(tmp_path), TREE), job)
    assert _keys(tmp_path) == before - ours
    assert deleted == len(ours)


# -- key layout of inner jobs -------------------------------------------------------------


@pytest.mark.parametrize(
    "executor_id",
    ["a1b2c3-0-M000-00003-1", "a1b2c3-12-A000-00000-0-M001-100000-17", "a1b2c3-0-R000-00000-999999"],
)
def test_executors_created_in_calls_have_lithops_executor_ids(executor_id: str) -> None:
    assert validate_executor_id(executor_id) == executor_id
    assert split_job_key(f"{executor_id}-M000") == (executor_id, "M000")


@pytest.mark.parametrize(
    "executor_id",
    [
        "a1b2c3-0-M000-0003-1",
        "a1b2c3-0-M000-00003-",
        "a1b2c3-0-X000-00003-1",
        "a1b2c3-0-M000-00003-1/..",
        "a1b2c3-0-M000-00003-1-M000",
        "a1b2c3-0-M000-00003-1\n",
    ],
)
def test_look_alike_executor_ids_are_refused(executor_id: str) -> None:
    with pytest.raises(ValueError, match="executor id"):
        validate_executor_id(executor_id)


def test_a_child_executor_is_the_calls_own() -> None:
    assert is_child_executor("a1b2c3-0-M000-00003-1", "a1b2c3-0", "M000", "00003")
    assert not is_child_executor("a1b2c3-0-M000-00003-1", "a1b2c3-0", "M000", "00004")
    assert not is_child_executor("a1b2c3-0-M000-00003-1-M000-00000-2", "a1b2c3-0", "M000", "00003")
    assert not is_child_executor("a1b2c3-0-M000-000031-1", "a1b2c3-0", "M000", "00003")
    with pytest.raises(ValueError, match="not a job key"):
        split_job_key("M000")


async def test_failure_report_reads_inner_jobs_the_trigger_names_and_only_the_jobs_own() -> None:
    job = case_job("inner_fails")
    source = LocalStatusSource(str(FIXTURES), TREE)
    inner = f"{job.executor_id}-A000-00000-6-M000"
    report = await afailure_report(source, job, {inner: ["00002"]})
    assert f"1 call(s) of job {inner} failed: 00002" in report
    assert "ValueError: inner boom 2" in report and "Traceback" in report
    # A crafted event cannot point the worker at another job's objects.
    other = CASES["map"]["executor_id"]
    for name in (
        f"{other}-M000",
        f"{other}-M000-00000-1-M000",
        "../x-M000",
        f"{job.executor_id}-A000-x-1-M000",
    ):
        with pytest.raises(ValueError, match="is not a job of"):
            await afailure_report(source, job, {name: ["00000"]})


async def test_a_status_we_do_not_understand_fails_the_task_end_to_end(tmp_path: Path) -> None:
    """Poller, then failure report, then fetch: the call fails with the reason at each
    step, and no path gives None for it."""
    job = JobRef(
        executor_id="a1b2c3-0",
        job_ids=("M000",),
        total_calls={"M000": 2},
        storage=StorageLocation(kind="localhost", bucket="bkt", backend="localhost", root=str(tmp_path)),
        call_type="map",
        engine_version="3.8.0",
    )
    base = tmp_path / "bkt" / "lithops.jobs" / "a1b2c3-0-M000"
    good = {"exception": False, "func_result_size": 5, "result": repr(pickle.dumps(1))}
    odd = {"exception": False, "func_result_size": 0, "result_url": "s3://somewhere"}
    for call, status in (("00000", good), ("00001", odd)):
        (base / call).mkdir(parents=True)
        (base / call / "status.json").write_text(json.dumps(status))
    source = LocalStatusSource(str(tmp_path), "bkt")
    polled = await JobPoller(job).poll(source)
    assert polled.complete and list(polled.failed["M000"]) == ["00001"]
    assert "has no result this provider understands (fields ['result_url']" in (
        polled.failed["M000"]["00001"].error or ""
    )
    report = await afailure_report(source, job, {"M000": ["00001"]})
    assert "refusing to report None" in report
    with pytest.raises(JobFailedError, match="refusing to report None"):
        await afetch_results(source, job)
