"""Unit tests of pywren_deferrable.job: Lithops' key layout, id validation, JobRef."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pywren_deferrable.job import (
    JobRef,
    ParsedKey,
    StorageLocation,
    call_id,
    call_prefix,
    calls_in_listing_order,
    executor_prefix,
    is_key_owned_by_job,
    job_key,
    job_prefix,
    list_start_after,
    output_key,
    parse_job_object_key,
    status_key,
    validate_executor_id,
    validate_job_id,
)

EXEC = "a1b2c3-0"
PREFIX = "lithops.jobs/a1b2c3-0-M000/"

BAD_EXECUTOR_IDS = [
    "",
    "../x",
    "a1b2c3-0/..",
    "a1b2c3",
    "A1B2C3-0",
    "a1b2c3-",
    "a1b2c3-0 ",
    "a1b2c-0",
    None,
    7,
    b"a1b2c3-0",
]
BAD_JOB_IDS = ["", "M00", "X000", "m000", "M000/", "../M000", "M0a0", "M000 ", None, 0, b"M000"]


def _storage(**kwargs):
    base = {"kind": "s3", "bucket": "my-bucket", "backend": "minio", "endpoint": "http://127.0.0.1:9000"}
    base.update(kwargs)
    return StorageLocation(**base)


def _ref(**kwargs):
    fields = {
        "executor_id": EXEC,
        "job_ids": ("M000", "R000"),
        "total_calls": {"M000": 3, "R000": 1},
        "storage": _storage(),
        "call_type": "map_reduce",
        "engine_version": "3.8.0",
    }
    fields.update(kwargs)
    return JobRef(**fields)


# -- key layout -----------------------------------------------------------------------


def test_key_functions_match_lithops_layout():
    assert call_id(2) == "00002"
    assert call_id(0) == "00000"
    assert call_id(12345) == "12345"
    assert job_key(EXEC, "M000") == "a1b2c3-0-M000"
    assert job_prefix(EXEC, "M000") == "lithops.jobs/a1b2c3-0-M000/"
    assert executor_prefix(EXEC) == "lithops.jobs/a1b2c3-0/"
    assert call_prefix(EXEC, "M000", "00002") == "lithops.jobs/a1b2c3-0-M000/00002/"
    assert status_key(EXEC, "M000", "00002") == "lithops.jobs/a1b2c3-0-M000/00002/status.json"
    assert output_key(EXEC, "M000", "00002") == "lithops.jobs/a1b2c3-0-M000/00002/output.pickle"
    assert status_key("ffffff-123456", "R123456", call_id(7)) == (
        "lithops.jobs/ffffff-123456-R123456/00007/status.json"
    )


@pytest.mark.parametrize("job_id", ["A000", "M000", "R000", "M999", "M123456"])
def test_job_prefix_ends_with_slash(job_id):
    prefix = job_prefix(EXEC, job_id)
    assert prefix.endswith("/")
    assert prefix == f"lithops.jobs/{EXEC}-{job_id}/"


def test_list_start_after_values():
    assert list_start_after(EXEC, "M000", None) == ""
    assert list_start_after(EXEC, "M000", "00000") == "lithops.jobs/a1b2c3-0-M000/00000/~"
    assert list_start_after(EXEC, "M000", "00041") == "lithops.jobs/a1b2c3-0-M000/00041/~"


@pytest.mark.parametrize("bad", BAD_EXECUTOR_IDS)
def test_validate_executor_id_rejects(bad):
    with pytest.raises(ValueError, match="executor_id"):
        validate_executor_id(bad)


@pytest.mark.parametrize("bad", BAD_EXECUTOR_IDS)
def test_key_functions_reject_bad_executor_id(bad):
    with pytest.raises(ValueError, match="executor_id"):
        job_prefix(bad, "M000")
    with pytest.raises(ValueError, match="executor_id"):
        executor_prefix(bad)
    with pytest.raises(ValueError, match="executor_id"):
        status_key(bad, "M000", "00000")


@pytest.mark.parametrize("good", ["a1b2c3-0", "000000-1", "abcdef-999999"])
def test_validate_executor_id_accepts(good):
    assert validate_executor_id(good) == good


@pytest.mark.parametrize("bad", BAD_JOB_IDS)
def test_validate_job_id_rejects(bad):
    with pytest.raises(ValueError, match="job_id"):
        validate_job_id(bad)


@pytest.mark.parametrize("bad", BAD_JOB_IDS)
def test_key_functions_reject_bad_job_id(bad):
    with pytest.raises(ValueError, match="job_id"):
        job_prefix(EXEC, bad)
    with pytest.raises(ValueError, match="job_id"):
        output_key(EXEC, bad, "00000")


@pytest.mark.parametrize("good", ["A000", "M000", "R000", "M0001", "R999999"])
def test_validate_job_id_accepts(good):
    assert validate_job_id(good) == good


# -- parse_job_object_key -------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (PREFIX + "00002/status.json", ParsedKey("00002", "status")),
        (PREFIX + "00002/output.pickle", ParsedKey("00002", "output")),
        (PREFIX + "00002/0123456789ab.init", ParsedKey("00002", "init")),
        (PREFIX + "00000/status.json", ParsedKey("00000", "status")),
        (PREFIX + "123456/status.json", ParsedKey("123456", "status")),
        (PREFIX + "00002/something.else", ParsedKey("00002", "other")),
        (PREFIX + "aggdata.pickle", None),
        (PREFIX + "00002", None),
        (PREFIX + "0002/status.json", None),
        (PREFIX + "abcde/status.json", None),
        (PREFIX + "00002/sub/status.json", None),
        (PREFIX, None),
        ("lithops.jobs/a1b2c3-0-M001/00002/status.json", None),
        ("lithops.jobs/a1b2c3-01-M000/00002/status.json", None),
        ("lithops.jobs/a1b2c3-0/00002/status.json", None),
        ("other/lithops.jobs/a1b2c3-0-M000/00002/status.json", None),
    ],
)
def test_parse_job_object_key(key, expected):
    assert parse_job_object_key(PREFIX, key) == expected


# -- JobRef -----------------------------------------------------------------------------


def test_jobref_properties():
    ref = _ref()
    assert ref.calls == 4
    assert ref.result_job_id == "R000"
    assert ref.prefixes() == [
        "lithops.jobs/a1b2c3-0-M000/",
        "lithops.jobs/a1b2c3-0-R000/",
        "lithops.jobs/a1b2c3-0/",
    ]
    single = _ref(job_ids=("M000",), total_calls={"M000": 7}, call_type="map")
    assert single.calls == 7
    assert single.result_job_id == "M000"
    assert single.prefixes() == ["lithops.jobs/a1b2c3-0-M000/", "lithops.jobs/a1b2c3-0/"]


def test_jobref_round_trip_through_json():
    ref = _ref(runner_pid=1234, runner_log="/tmp/runner.log", submitted_at=1.5, call_timeout=60.0)
    data = ref.to_dict()
    assert data["job_ids"] == ["M000", "R000"]
    assert data["storage"] == {
        "kind": "s3",
        "bucket": "my-bucket",
        "backend": "minio",
        "endpoint": "http://127.0.0.1:9000",
        "region": None,
        "root": None,
    }
    again = JobRef.from_dict(json.loads(json.dumps(data)))
    assert again == ref
    assert again.job_ids == ("M000", "R000")
    assert isinstance(again.storage, StorageLocation)


def test_jobref_from_dict_does_not_mutate_input():
    data = _ref().to_dict()
    snapshot = json.loads(json.dumps(data))
    JobRef.from_dict(data)
    assert data == snapshot
    assert isinstance(data["storage"], dict)
    assert isinstance(data["job_ids"], list)


def test_jobref_round_trip_localhost():
    storage = StorageLocation(kind="localhost", bucket="storage", backend="localhost", root="/tmp/lithops")
    ref = _ref(storage=storage, job_ids=("A000",), total_calls={"A000": 1}, call_type="call_async")
    assert JobRef.from_dict(ref.to_dict()) == ref


def _bad(mutate):
    data = _ref().to_dict()
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_bad(lambda d: d["total_calls"].update(M000=0)), "total_calls"),
        (_bad(lambda d: d["total_calls"].update(M000=-2)), "total_calls"),
        (_bad(lambda d: d["total_calls"].update(M000="3")), "total_calls"),
        (_bad(lambda d: d["total_calls"].pop("R000")), "total_calls"),
        (_bad(lambda d: d.update(job_ids=["M000", "X000"])), "job_id"),
        (_bad(lambda d: d.update(job_ids=["M000", "../R000"])), "job_id"),
        (_bad(lambda d: d.update(job_ids=[])), "at least one job id"),
        (_bad(lambda d: d.update(executor_id="a1b2c3-0/..")), "executor_id"),
        (_bad(lambda d: d["storage"].update(bucket="")), "bucket"),
        (_bad(lambda d: d["storage"].update(bucket="../b")), "bucket"),
        (_bad(lambda d: d["storage"].update(bucket="a/b")), "bucket"),
        (_bad(lambda d: d["storage"].update(kind="ftp")), "storage kind"),
        (_bad(lambda d: d["storage"].update(kind="localhost")), "root"),
    ],
)
def test_jobref_from_dict_rejects(data, match):
    with pytest.raises(ValueError, match=match):
        JobRef.from_dict(data)


def test_jobref_from_dict_rejects_non_dict():
    with pytest.raises(TypeError, match="JobRef must be a dict"):
        JobRef.from_dict(["a1b2c3-0"])


# -- property: list_start_after ---------------------------------------------------------

_OBJECT_NAMES = st.one_of(
    st.sampled_from(["status.json", "output.pickle"]),
    st.text(alphabet="0123456789abcdef", min_size=12, max_size=12).map(lambda h: h + ".init"),
)


@given(
    total=st.sampled_from([1, 2, 10, 1000, 100_000, 100_001, 123_456]),
    data=st.data(),
    name=_OBJECT_NAMES,
    job_id=st.sampled_from(["A000", "M000", "R000", "M012"]),
)
@example(total=100_001, data=None, name="status.json", job_id="M000")
def test_list_start_after_skips_exactly_the_calls_listed_before(total, data, name, job_id):
    """For any watermark position in listing order, a call's objects are listed after the
    StartAfter key iff the call comes after the watermark in that order, including jobs
    of more than 100,000 calls whose six-digit ids interleave with the five-digit ones."""
    order = calls_in_listing_order(total)
    if data is None:  # the explicit example: the watermark at "10000", the call "100000"
        position, call = order.index("10000"), "100000"
    else:
        position = data.draw(st.integers(min_value=0, max_value=total - 1))
        call = call_id(data.draw(st.integers(min_value=0, max_value=total - 1)))
    start = list_start_after(EXEC, job_id, order[position])
    key = f"{call_prefix(EXEC, job_id, call)}{name}"
    assert (key > start) == (order.index(call) > position)
    assert key > job_prefix(EXEC, job_id)


def test_listing_order_is_what_s3_lists():
    """S3 lists keys in byte order: the order of the ids must match their keys' order."""
    for total in (100, 100_001, 120_000):
        order = calls_in_listing_order(total)
        keys = [status_key(EXEC, "M000", c) for c in order]
        assert keys == sorted(keys)
        assert sorted(order) == sorted(call_id(i) for i in range(total))
    assert calls_in_listing_order(3) == ["00000", "00001", "00002"]
    big = calls_in_listing_order(100_001)
    assert big[big.index("10000") + 1] == "100000"


# -- property: is_key_owned_by_job ------------------------------------------------------

_REF = _ref()


def _owned_oracle(key, prefixes):
    # Independent formulation: the key's first len(p) characters are p, and something follows.
    return any(key[: len(p)] == p and key[len(p) :] != "" for p in prefixes)


_NEAR_EXECUTORS = [
    "a1b2c3-0",
    "a1b2c3-01",
    "a1b2c3-00",
    "a1b2c3-1",
    "a1b2c3-10",
    "a1b2c",
    "a1b2c3-",
    "b1b2c3-0",
]
_NEAR_JOBS = ["M000", "M0001", "M00", "M001", "R000", "R0001", "A000", ""]
_SUFFIXES = [
    "",
    "/",
    "/00000/status.json",
    "/aggdata.pickle",
    "/abc.func.pickle",
    "/../other",
    "//",
    "x",
    "0/00000/status.json",
]


@st.composite
def _adversarial_keys(draw):
    kind = draw(st.integers(min_value=0, max_value=3))
    if kind == 0:
        return draw(st.text(max_size=60))
    if kind == 1:
        # a prefix of the job's own, possibly cut short or extended
        base = draw(st.sampled_from(_REF.prefixes()))
        cut = draw(st.integers(min_value=0, max_value=len(base)))
        return base[:cut] + draw(st.text(max_size=20))
    exec_id = draw(st.sampled_from(_NEAR_EXECUTORS))
    head = draw(st.sampled_from(["lithops.jobs/", "lithops.jobs", "lithops.jobsx/", "/lithops.jobs/", ""]))
    if kind == 2:
        job = draw(st.sampled_from(_NEAR_JOBS))
        body = f"{exec_id}-{job}" if job else exec_id
    else:
        body = exec_id
    return head + body + draw(st.sampled_from(_SUFFIXES))


@given(key=_adversarial_keys())
@example(key="lithops.jobs/a1b2c3-0-M000/")
@example(key="lithops.jobs/a1b2c3-0-R000/")
@example(key="lithops.jobs/a1b2c3-0/")
@example(key="lithops.jobs/a1b2c3-0")
@example(key="lithops.jobs/a1b2c3-01/x.func.pickle")
@example(key="lithops.jobs/a1b2c3-0-M0001/00000/status.json")
@example(key="lithops.jobs/a1b2c3-0-M000/00000/status.json")
@example(key="lithops.jobs/a1b2c3-0/abc.func.pickle")
@example(key="")
def test_is_key_owned_by_job_property(key):
    prefixes = _REF.prefixes()
    assert is_key_owned_by_job(key, _REF.executor_id, list(_REF.job_ids)) == _owned_oracle(key, prefixes)


@pytest.mark.parametrize(
    ("key", "owned"),
    [
        ("lithops.jobs/a1b2c3-0-M000/00000/status.json", True),
        ("lithops.jobs/a1b2c3-0-R000/00000/output.pickle", True),
        ("lithops.jobs/a1b2c3-0-M000/aggdata.pickle", True),
        ("lithops.jobs/a1b2c3-0/0123abcd.func.pickle", True),
        ("lithops.jobs/a1b2c3-0-M000/", False),
        ("lithops.jobs/a1b2c3-0/", False),
        ("lithops.jobs/a1b2c3-0-M000", False),
        ("lithops.jobs/a1b2c3-0-M0001/00000/status.json", False),
        ("lithops.jobs/a1b2c3-0-M001/00000/status.json", False),
        ("lithops.jobs/a1b2c3-01/0123abcd.func.pickle", False),
        ("lithops.jobs/a1b2c3-01-M000/00000/status.json", False),
        ("lithops.jobs/a1b2c3-0-A000/00000/status.json", False),
        ("lithops.jobs/", False),
        ("", False),
        ("x/lithops.jobs/a1b2c3-0-M000/00000/status.json", False),
    ],
)
def test_is_key_owned_by_job_examples(key, owned):
    assert is_key_owned_by_job(key, EXEC, ["M000", "R000"]) is owned


def test_is_key_owned_by_job_rejects_bad_ids():
    with pytest.raises(ValueError, match="executor_id"):
        is_key_owned_by_job("lithops.jobs/x", "", ["M000"])
    with pytest.raises(ValueError, match="job_id"):
        is_key_owned_by_job("lithops.jobs/a1b2c3-0-/x", EXEC, [""])
