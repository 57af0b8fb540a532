"""Unit tests of the pywren engine's pure parts: key layout, JobRef, config, form, options.

pywren-ibm-cloud 1.7.3 keeps a job's objects under ``pywren.jobs/<executor_id>/<job_id>/``
(executor ids ``a1b2c3/0``); Lithops under ``lithops.jobs/<executor_id>-<job_id>/`` plus the
executor's own ``lithops.jobs/<executor_id>/``. Nothing here imports pywren_ibm_cloud.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pywren_deferrable.config import (
    S3Credentials,
    build_config,
    compute_backend_name,
    connection_engine,
    engine_of,
    s3_credentials,
    storage_backend_name,
    storage_location,
)
from pywren_deferrable.config_pywren import pywren_localhost_storage_root
from pywren_deferrable.connection_form import expand_form_fields, missing_compute_keys
from pywren_deferrable.job import (
    LAYOUTS,
    JobRef,
    KeyLayout,
    ParsedKey,
    StorageLocation,
    call_id,
    call_prefix,
    calls_in_listing_order,
    executor_prefix,
    is_key_owned_by_job,
    job_key,
    job_prefix,
    key_layout,
    list_start_after,
    output_key,
    owned_prefixes,
    parse_job_object_key,
    status_key,
    validate_executor_id,
)
from pywren_deferrable.pywren_engine import pywren_options
from pywren_deferrable.results import aclean_job
from pywren_deferrable.submit import JobSpec, call_timeout

PYWREN = "pywren"
LITHOPS = "lithops"
PEXEC = "a1b2c3/0"
LEXEC = "a1b2c3-0"
PPREFIX = "pywren.jobs/a1b2c3/0/M000/"
BUCKET = "bucket"


def _pywren_ref(**kwargs: Any) -> JobRef:
    fields: dict[str, Any] = {
        "executor_id": PEXEC,
        "job_ids": ("M000", "R000"),
        "total_calls": {"M000": 3, "R000": 1},
        "storage": StorageLocation(
            kind="s3", bucket="my-bucket", backend="ceph", endpoint="http://127.0.0.1:9000"
        ),
        "call_type": "map_reduce",
        "engine_version": "1.7.3",
        "engine": PYWREN,
    }
    fields.update(kwargs)
    return JobRef(**fields)


def _noop(x: Any) -> Any:
    return x


# -- key layouts --------------------------------------------------------------------------


def test_layout_table() -> None:
    assert set(LAYOUTS) == {LITHOPS, PYWREN}
    pywren = key_layout(PYWREN)
    assert isinstance(pywren, KeyLayout)
    assert (pywren.jobs_prefix, pywren.job_separator, pywren.executor_example, pywren.executor_objects) == (
        "pywren.jobs",
        "/",
        "a1b2c3/0",
        False,
    )
    lithops = key_layout(LITHOPS)
    assert (
        lithops.jobs_prefix,
        lithops.job_separator,
        lithops.executor_example,
        lithops.executor_objects,
    ) == (
        "lithops.jobs",
        "-",
        "a1b2c3-0",
        True,
    )


@pytest.mark.parametrize("bad", ["spark", "", "PYWREN", None, 3, ["pywren"]])
def test_key_layout_refuses_unknown_engines(bad: Any) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        key_layout(bad)


@pytest.mark.parametrize("bad", ["spark", "Lithops"])
def test_key_functions_refuse_unknown_engines(bad: str) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        job_prefix(PEXEC, "M000", bad)
    with pytest.raises(ValueError, match="is not one of"):
        validate_executor_id(PEXEC, bad)


def test_pywren_key_functions_match_pywren_layout() -> None:
    assert job_key(PEXEC, "M000", PYWREN) == "a1b2c3/0/M000"
    assert job_prefix(PEXEC, "M000", PYWREN) == "pywren.jobs/a1b2c3/0/M000/"
    assert job_prefix("ffffff/123456", "R012", PYWREN) == "pywren.jobs/ffffff/123456/R012/"
    assert executor_prefix(PEXEC, PYWREN) is None
    assert call_prefix(PEXEC, "M000", "00002", PYWREN) == "pywren.jobs/a1b2c3/0/M000/00002/"
    assert status_key(PEXEC, "M000", "00002", PYWREN) == "pywren.jobs/a1b2c3/0/M000/00002/status.json"
    assert output_key(PEXEC, "A000", "00000", PYWREN) == "pywren.jobs/a1b2c3/0/A000/00000/output.pickle"
    assert list_start_after(PEXEC, "M000", None, PYWREN) == ""
    assert list_start_after(PEXEC, "M000", "00041", PYWREN) == "pywren.jobs/a1b2c3/0/M000/00041/~"
    assert owned_prefixes(PEXEC, ["M000", "R000"], PYWREN) == [
        "pywren.jobs/a1b2c3/0/M000/",
        "pywren.jobs/a1b2c3/0/R000/",
    ]


def test_lithops_key_functions_unchanged() -> None:
    for args in ((), (LITHOPS,)):
        assert job_key(LEXEC, "M000", *args) == "a1b2c3-0-M000"
        assert job_prefix(LEXEC, "M000", *args) == "lithops.jobs/a1b2c3-0-M000/"
        assert executor_prefix(LEXEC, *args) == "lithops.jobs/a1b2c3-0/"
        assert call_prefix(LEXEC, "M000", "00002", *args) == "lithops.jobs/a1b2c3-0-M000/00002/"
        assert status_key(LEXEC, "M000", "00002", *args) == "lithops.jobs/a1b2c3-0-M000/00002/status.json"
        assert output_key(LEXEC, "M000", "00002", *args) == "lithops.jobs/a1b2c3-0-M000/00002/output.pickle"
        assert list_start_after(LEXEC, "M000", "00041", *args) == "lithops.jobs/a1b2c3-0-M000/00041/~"
        assert list_start_after(LEXEC, "M000", None, *args) == ""
        assert owned_prefixes(LEXEC, ["M000", "R000"], *args) == [
            "lithops.jobs/a1b2c3-0-M000/",
            "lithops.jobs/a1b2c3-0-R000/",
            "lithops.jobs/a1b2c3-0/",
        ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (PPREFIX + "00000/status.json", ParsedKey("00000", "status")),
        (PPREFIX + "00007/output.pickle", ParsedKey("00007", "output")),
        (PPREFIX + "00007/4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99.init", ParsedKey("00007", "init")),
        (PPREFIX + "00007/data.pickle", ParsedKey("00007", "other")),
        (PPREFIX + "func.pickle", None),
        (PPREFIX + "aggdata.pickle", None),
        (PPREFIX + "00007/x/status.json", None),
        (PPREFIX + "0007/status.json", None),
        ("pywren.jobs/a1b2c3/0/M001/00000/status.json", None),
        ("pywren.jobs/a1b2c3/01/M000/00000/status.json", None),
    ],
)
def test_parse_pywren_object_keys(key: str, expected: ParsedKey | None) -> None:
    assert parse_job_object_key(PPREFIX, key) == expected


# -- executor id validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine_name", "executor_id"),
    [
        (PYWREN, "a1b2c3/0"),
        (PYWREN, "ffffff/123456"),
        (PYWREN, "000000/17"),
        (LITHOPS, "a1b2c3-0"),
        (LITHOPS, "ffffff-123456"),
    ],
)
def test_validate_executor_id_accepts(engine_name: str, executor_id: str) -> None:
    assert validate_executor_id(executor_id, engine_name) == executor_id


@pytest.mark.parametrize(
    ("engine_name", "executor_id"),
    [
        (PYWREN, "a1b2c3-0"),  # a Lithops id
        (LITHOPS, "a1b2c3/0"),  # a pywren id
        (PYWREN, "a1b2c3/../x"),
        (PYWREN, ""),
        (PYWREN, "a1b2c3/0/"),
        (PYWREN, "a1b2c3/"),
        (PYWREN, "a1b2c3"),
        (PYWREN, "/0"),
        (PYWREN, "../a1b2c3/0"),
        (PYWREN, "a1b2c3/0/M000"),
        (PYWREN, "a1b2c3//0"),
        (PYWREN, "A1B2C3/0"),
        (PYWREN, "a1b2c/0"),
        (PYWREN, "a1b2c3d/0"),
        (PYWREN, "a1b2c3/1234567"),
        (PYWREN, "a1b2c3/x"),
        (PYWREN, " a1b2c3/0"),
        (PYWREN, None),
        (PYWREN, b"a1b2c3/0"),
        (LITHOPS, "a1b2c3-0/"),
        (LITHOPS, ""),
    ],
)
def test_validate_executor_id_refuses(engine_name: str, executor_id: Any) -> None:
    with pytest.raises(ValueError, match=f"is not a {engine_name} executor id"):
        validate_executor_id(executor_id, engine_name)


@pytest.mark.parametrize(("engine_name", "executor_id"), [(PYWREN, "a1b2c3/0\n"), (LITHOPS, "a1b2c3-0\n")])
def test_validate_executor_id_refuses_a_trailing_newline(engine_name: str, executor_id: str) -> None:
    """``$`` alone matches before a final newline: the ids must match in full."""
    with pytest.raises(ValueError, match="executor id"):
        validate_executor_id(executor_id, engine_name)
    with pytest.raises(ValueError, match="job id"):
        job_prefix(PEXEC, "M000\n", PYWREN)
    assert parse_job_object_key(PPREFIX, PPREFIX + "00000\n/status.json") is None


@pytest.mark.parametrize("bad", ["a1b2c3-0", "a1b2c3/../x", "", "a1b2c3/0/"])
def test_pywren_key_functions_refuse_bad_executor_ids(bad: str) -> None:
    for build in (
        lambda: job_key(bad, "M000", PYWREN),
        lambda: job_prefix(bad, "M000", PYWREN),
        lambda: call_prefix(bad, "M000", "00000", PYWREN),
        lambda: status_key(bad, "M000", "00000", PYWREN),
        lambda: output_key(bad, "M000", "00000", PYWREN),
        lambda: list_start_after(bad, "M000", "00000", PYWREN),
        lambda: owned_prefixes(bad, ["M000"], PYWREN),
        lambda: is_key_owned_by_job(PPREFIX + "00000/status.json", bad, ["M000"], PYWREN),
        lambda: _pywren_ref(executor_id=bad),
    ):
        with pytest.raises(ValueError, match="executor id"):
            build()


def test_pywren_key_functions_refuse_bad_job_ids() -> None:
    for bad in ("", "M00", "M000/", "../M000", "X000"):
        with pytest.raises(ValueError, match="job id"):
            job_prefix(PEXEC, bad, PYWREN)


# -- what a pywren job owns -----------------------------------------------------------------


def test_pywren_jobref_prefixes_have_no_executor_prefix() -> None:
    ref = _pywren_ref()
    assert ref.prefixes() == ["pywren.jobs/a1b2c3/0/M000/", "pywren.jobs/a1b2c3/0/R000/"]
    assert "pywren.jobs/a1b2c3/0/" not in ref.prefixes()
    assert all(p.count("/") == 4 for p in ref.prefixes())


@pytest.mark.parametrize(
    ("key", "owned"),
    [
        ("pywren.jobs/a1b2c3/0/M000/00000/status.json", True),
        ("pywren.jobs/a1b2c3/0/M000/00000/output.pickle", True),
        ("pywren.jobs/a1b2c3/0/M000/00000/abc.init", True),
        ("pywren.jobs/a1b2c3/0/M000/func.pickle", True),
        ("pywren.jobs/a1b2c3/0/M000/aggdata.pickle", True),
        ("pywren.jobs/a1b2c3/0/M000/", False),  # the prefix itself
        ("pywren.jobs/a1b2c3/0/M000", False),
        ("pywren.jobs/a1b2c3/0/M001/00000/status.json", False),  # a sibling job
        ("pywren.jobs/a1b2c3/0/M001/func.pickle", False),
        ("pywren.jobs/a1b2c3/0/M0000/00000/status.json", False),
        ("pywren.jobs/a1b2c3/0/x.func.pickle", False),  # the executor's level
        ("pywren.jobs/a1b2c3/01/M000/00000/status.json", False),  # executor a1b2c3/01
        ("pywren.jobs/a1b2c3/1/M000/00000/status.json", False),
        ("pywren.jobs/a1b2c4/0/M000/00000/status.json", False),
        ("lithops.jobs/a1b2c3-0-M000/00000/status.json", False),
        ("lithops.jobs/a1b2c3-0/x.func.pickle", False),
        ("pywren.jobsx/a1b2c3/0/M000/00000/status.json", False),
        ("other/pywren.jobs/a1b2c3/0/M000/00000/status.json", False),
    ],
)
def test_pywren_ownership(key: str, owned: bool) -> None:
    assert is_key_owned_by_job(key, PEXEC, ["M000"], PYWREN) is owned
    assert _pywren_ref(job_ids=("M000",), total_calls={"M000": 1}).owns(key) is owned


def test_lithops_job_still_owns_its_executor_prefix() -> None:
    assert is_key_owned_by_job("lithops.jobs/a1b2c3-0/x.func.pickle", LEXEC, ["M000"]) is True
    assert is_key_owned_by_job("pywren.jobs/a1b2c3/0/M000/00000/status.json", LEXEC, ["M000"]) is False


class _PrefixBlindSource:
    """A storage that ignores the listing prefix: the cleaner must still keep to the job."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.deleted: list[str] = []

    async def list_keys(self, prefix: str, start_after: str = "") -> Any:
        yield list(self.keys)

    async def delete(self, keys: list[str]) -> int:
        self.deleted.extend(keys)
        return len(keys)


def test_clean_rechecks_every_listed_key_of_a_pywren_job() -> None:
    job = _pywren_ref(job_ids=("M000",), total_calls={"M000": 1})
    own = [PPREFIX + "00000/status.json", PPREFIX + "func.pickle"]
    others = [
        "pywren.jobs/a1b2c3/0/M001/00000/status.json",
        "pywren.jobs/a1b2c3/01/M000/00000/status.json",
        "pywren.jobs/a1b2c3/0/x.func.pickle",
        PPREFIX,
    ]
    source = _PrefixBlindSource(own + others)
    assert asyncio.run(aclean_job(source, job)) == 2  # type: ignore[arg-type]
    assert source.deleted == own


# -- property: list_start_after for pywren ----------------------------------------------------

_OBJECT_NAMES = st.one_of(
    st.sampled_from(["status.json", "output.pickle"]),
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).map(lambda h: h + ".init"),
)


@settings(max_examples=50, deadline=None)
@given(
    total=st.sampled_from([1, 2, 10, 1000, 100_000, 100_001, 123_456]),
    data=st.data(),
    name=_OBJECT_NAMES,
    job_id=st.sampled_from(["A000", "M000", "R000", "M012"]),
    executor_id=st.sampled_from([PEXEC, "ffffff/123456", "000000/9"]),
)
@example(total=100_001, data=None, name="status.json", job_id="M000", executor_id=PEXEC)
def test_pywren_list_start_after_skips_exactly_the_calls_listed_before(
    total: int, data: Any, name: str, job_id: str, executor_id: str
) -> None:
    """A call's objects list after the StartAfter key iff the call comes after the
    watermark in listing order (six-digit ids included)."""
    order = calls_in_listing_order(total)
    if data is None:  # the explicit example: the watermark at "10000", the call "100000"
        position, call = order.index("10000"), "100000"
    else:
        position = data.draw(st.integers(min_value=0, max_value=total - 1))
        call = call_id(data.draw(st.integers(min_value=0, max_value=total - 1)))
    start = list_start_after(executor_id, job_id, order[position], PYWREN)
    assert start == f"pywren.jobs/{executor_id}/{job_id}/{order[position]}/~"
    key = f"{call_prefix(executor_id, job_id, call, PYWREN)}{name}"
    assert (key > start) == (order.index(call) > position)
    assert key > job_prefix(executor_id, job_id, PYWREN)


def test_pywren_start_after_sorts_between_the_last_done_call_and_the_next() -> None:
    order = calls_in_listing_order(5)
    for position in range(len(order) - 1):
        start = list_start_after(PEXEC, "M000", order[position], PYWREN)
        done = [
            f"{PPREFIX}{order[position]}/{n}" for n in ("status.json", "output.pickle", "ff" * 16 + ".init")
        ]
        following = [f"{PPREFIX}{order[position + 1]}/{n}" for n in ("0" * 32 + ".init", "status.json")]
        assert max(done) < start < min(following)


def test_pywren_listing_order_is_what_s3_lists() -> None:
    for total in (100, 100_001):
        keys = [status_key(PEXEC, "M000", c, PYWREN) for c in calls_in_listing_order(total)]
        assert keys == sorted(keys)


# -- JobRef with engine pywren --------------------------------------------------------------


def test_pywren_jobref_methods() -> None:
    ref = _pywren_ref()
    assert ref.engine == PYWREN
    assert ref.engine_version == "1.7.3"
    assert ref.job_prefix("M000") == "pywren.jobs/a1b2c3/0/M000/"
    assert ref.status_key("R000", "00000") == "pywren.jobs/a1b2c3/0/R000/00000/status.json"
    assert ref.output_key("M000", "00002") == "pywren.jobs/a1b2c3/0/M000/00002/output.pickle"
    assert ref.list_start_after("M000", "00001") == "pywren.jobs/a1b2c3/0/M000/00001/~"
    assert ref.list_start_after("M000", None) == ""
    assert ref.owns("pywren.jobs/a1b2c3/0/R000/00000/status.json") is True
    assert ref.owns("pywren.jobs/a1b2c3/0/R001/00000/status.json") is False
    assert ref.calls == 4
    assert ref.result_job_id == "R000"


def test_pywren_jobref_round_trip_through_json() -> None:
    ref = _pywren_ref(
        storage=StorageLocation(
            kind="localhost", bucket="storage", backend="localhost", root="/tmp/pywren-data"
        ),
        runner_pid=4242,
        runner_log="/tmp/runner.log",
        submitted_at=1700000000.5,
        call_timeout=595.0,
    )
    data = ref.to_dict()
    assert data == {
        "executor_id": "a1b2c3/0",
        "job_ids": ["M000", "R000"],
        "total_calls": {"M000": 3, "R000": 1},
        "storage": {
            "kind": "localhost",
            "bucket": "storage",
            "backend": "localhost",
            "endpoint": None,
            "region": None,
            "root": "/tmp/pywren-data",
        },
        "call_type": "map_reduce",
        "engine_version": "1.7.3",
        "runner_pid": 4242,
        "runner_log": "/tmp/runner.log",
        "submitted_at": 1700000000.5,
        "call_timeout": 595.0,
        "engine": "pywren",
        "dispatch": [],  # no job of it left to the trigger to invoke (FaaS dispatch)
    }
    back = JobRef.from_dict(json.loads(json.dumps(data)))
    assert back == ref
    assert back.prefixes() == ["pywren.jobs/a1b2c3/0/M000/", "pywren.jobs/a1b2c3/0/R000/"]


def _old_lithops_dict() -> dict[str, Any]:
    """A JobRef as serialized before the pywren engine existed."""
    return {
        "executor_id": "a1b2c3-0",
        "job_ids": ["M000"],
        "total_calls": {"M000": 2},
        "storage": {
            "kind": "s3",
            "bucket": "my-bucket",
            "backend": "minio",
            "endpoint": "http://127.0.0.1:9000",
        },
        "call_type": "map",
        "lithops_version": "3.8.0",
        "runner_pid": None,
    }


def test_from_dict_reads_an_old_lithops_jobref() -> None:
    data = _old_lithops_dict()
    before = copy.deepcopy(data)
    ref = JobRef.from_dict(data)
    assert data == before
    assert ref.engine == LITHOPS
    assert ref.engine_version == "3.8.0"
    assert ref.prefixes() == ["lithops.jobs/a1b2c3-0-M000/", "lithops.jobs/a1b2c3-0/"]
    assert ref.status_key("M000", "00001") == "lithops.jobs/a1b2c3-0-M000/00001/status.json"
    assert "lithops_version" not in ref.to_dict()
    assert ref.to_dict()["engine"] == LITHOPS


def test_from_dict_prefers_engine_version_over_lithops_version() -> None:
    data = {**_old_lithops_dict(), "engine_version": "3.9.0"}
    assert JobRef.from_dict(data).engine_version == "3.9.0"


def test_from_dict_without_any_version_is_refused() -> None:
    data = _old_lithops_dict()
    del data["lithops_version"]
    with pytest.raises(TypeError, match="engine_version"):
        JobRef.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"engine": "pywren"}, "is not a pywren executor id"),  # a Lithops id, engine pywren
        ({"engine": "spark"}, "is not one of"),
        ({"executor_id": "a1b2c3/0"}, "is not a lithops executor id"),  # pywren id, no engine
        ({"executor_id": "a1b2c3/0/", "engine": "pywren"}, "is not a pywren executor id"),
    ],
)
def test_from_dict_checks_the_executor_id_against_the_engine(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JobRef.from_dict({**_old_lithops_dict(), **changes})


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (None, LITHOPS),
        ({}, LITHOPS),
        ({"engine": ""}, LITHOPS),
        ({"engine": None}, LITHOPS),
        ({"engine": "lithops"}, LITHOPS),
        ({"engine": "pywren", "pywren": {}}, PYWREN),
    ],
)
def test_connection_engine(extra: dict[str, Any] | None, expected: str) -> None:
    assert connection_engine(extra) == expected


@pytest.mark.parametrize("bad", ["spark", "Pywren", "pywren-ibm-cloud"])
def test_unknown_engine_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=f"engine {bad!r} is not one of"):
        connection_engine({"engine": bad})
    with pytest.raises(ValueError, match=f"engine {bad!r} is not one of"):
        build_config({"engine": bad})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"pywren": {}}, PYWREN),
        ({"pywren": {}, "localhost": {}}, PYWREN),
        ({"lithops": {}}, LITHOPS),
        ({"lithops": {}, "pywren": {}}, LITHOPS),
        ({}, LITHOPS),
    ],
)
def test_engine_of(config: dict[str, Any], expected: str) -> None:
    assert engine_of(config) == expected


def test_pywren_defaults_are_this_machine() -> None:
    config = build_config({"engine": "pywren"})
    assert config == {
        "pywren": {
            "compute_backend": "localhost",
            "storage_backend": "localhost",
            "storage_bucket": "storage",
            "data_cleaner": False,
        }
    }
    assert engine_of(config) == PYWREN
    assert compute_backend_name(config) == "localhost"
    assert storage_backend_name(config) == "localhost"
    assert storage_location(config) == StorageLocation(
        kind="localhost", bucket="storage", backend="localhost", root=pywren_localhost_storage_root()
    )
    assert pywren_localhost_storage_root() == os.path.join(
        os.path.realpath(tempfile.gettempdir()), "pywren-data"
    )


def test_pywren_data_cleaner_is_forced_off() -> None:
    extra = {"engine": "pywren", "pywren": {"data_cleaner": True}}
    assert build_config(extra)["pywren"]["data_cleaner"] is False
    assert (
        build_config(extra, overrides={"pywren": {"data_cleaner": True}})["pywren"]["data_cleaner"] is False
    )
    assert build_config(extra, overrides={"data_cleaner": True})["pywren"]["data_cleaner"] is False


def test_pywren_ceph_takes_hmac_keys_and_endpoint_from_the_connection() -> None:
    extra = {"engine": "pywren", "pywren": {"storage_backend": "ceph", "storage_bucket": "pw-bucket"}}
    before = copy.deepcopy(extra)
    config = build_config(extra, login="AKID", password="SECRET", host="http://127.0.0.1:9000")
    assert extra == before
    assert config == {
        "pywren": {
            "storage_backend": "ceph",
            "storage_bucket": "pw-bucket",
            "compute_backend": "localhost",
            "data_cleaner": False,
        },
        "ceph": {"access_key": "AKID", "secret_key": "SECRET", "endpoint": "http://127.0.0.1:9000"},
    }
    assert "engine" not in config
    assert storage_backend_name(config) == "ceph"
    assert storage_location(config) == StorageLocation(
        kind="s3", bucket="pw-bucket", backend="ceph", endpoint="http://127.0.0.1:9000"
    )
    assert s3_credentials(config) == S3Credentials(access_key_id="AKID", secret_access_key="SECRET")


def test_pywren_storage_section_wins_over_the_connection_fields() -> None:
    extra = {
        "engine": "pywren",
        "pywren": {"storage_backend": "ceph", "storage_bucket": "pw-bucket"},
        "ceph": {"access_key": "A2", "secret_key": "S2", "endpoint": "http://ceph:7480"},
    }
    config = build_config(extra, login="AKID", password="SECRET", host="http://127.0.0.1:9000")
    assert config["ceph"] == {"access_key": "A2", "secret_key": "S2", "endpoint": "http://ceph:7480"}
    assert s3_credentials(config) == S3Credentials(access_key_id="A2", secret_access_key="S2")


def test_pywren_localhost_storage_ignores_the_connection_fields() -> None:
    config = build_config({"engine": "pywren"}, login="AKID", password="SECRET", host="http://x:1")
    assert set(config) == {"pywren"}


def test_pywren_ibm_cos_with_an_api_key_uses_iam() -> None:
    extra = {
        "engine": "pywren",
        "pywren": {"compute_backend": "ibm_cf", "storage_bucket": "cos-bucket"},
        "ibm_cos": {"endpoint": "http://s3.eu-de.cloud-object-storage.appdomain.cloud", "api_key": "COSKEY"},
    }
    config = build_config(extra)
    assert config["pywren"] == {
        "compute_backend": "ibm_cf",
        "storage_bucket": "cos-bucket",
        "storage_backend": "ibm_cos",
        "data_cleaner": False,
    }
    assert storage_location(config) == StorageLocation(
        kind="s3",
        bucket="cos-bucket",
        backend="ibm_cos",
        endpoint="https://s3.eu-de.cloud-object-storage.appdomain.cloud",  # pywren forces https
    )
    assert s3_credentials(config) == S3Credentials(
        access_key_id=None, secret_access_key=None, iam_api_key="COSKEY"
    )


def test_pywren_ibm_cos_prefers_hmac_keys_and_reads_iam_api_key() -> None:
    extra = {
        "engine": "pywren",
        "pywren": {"storage_backend": "ibm_cos", "storage_bucket": "cos-bucket"},
        "ibm_cos": {"endpoint": "https://cos", "api_key": "COSKEY"},
    }
    config = build_config(extra, login="AKID", password="SECRET")
    assert config["ibm_cos"] == {
        "endpoint": "https://cos",
        "api_key": "COSKEY",
        "access_key": "AKID",
        "secret_key": "SECRET",
    }
    assert s3_credentials(config) == S3Credentials(access_key_id="AKID", secret_access_key="SECRET")
    # Only one HMAC key: the API key wins.
    half = build_config(extra, login="AKID")
    assert s3_credentials(half) == S3Credentials(
        access_key_id=None, secret_access_key=None, iam_api_key="COSKEY", iam_endpoint=None
    )
    iam = build_config(
        {**extra, "ibm_cos": {"endpoint": "https://cos", "iam_api_key": "IAM", "iam_endpoint": "https://iam"}}
    )
    assert s3_credentials(iam) == S3Credentials(
        access_key_id=None, secret_access_key=None, iam_api_key="IAM", iam_endpoint="https://iam"
    )


def test_pywren_ibm_cos_reads_the_ibm_section_like_pywren() -> None:
    extra = {
        "engine": "pywren",
        "pywren": {"storage_backend": "ibm_cos", "storage_bucket": "cos-bucket"},
        "ibm": {"iam_api_key": "IAM"},
        "ibm_cos": {"endpoint": "https://cos"},
    }
    assert s3_credentials(build_config(extra)) == S3Credentials(
        access_key_id=None, secret_access_key=None, iam_api_key="IAM", iam_endpoint=None
    )
    # HMAC keys still come first, as in pywren's ibm_cos backend.
    hmac = build_config(extra, login="AKID", password="SECRET")
    assert s3_credentials(hmac) == S3Credentials(access_key_id="AKID", secret_access_key="SECRET")
    # The ibm section reaches only ibm_cos storage.
    ceph = build_config(
        {
            "engine": "pywren",
            "pywren": {"storage_backend": "ceph", "storage_bucket": "bkt"},
            "ibm": {"iam_api_key": "IAM", "access_key": "X", "secret_key": "Y"},
            "ceph": {"endpoint": "http://c", "access_key": "A", "secret_key": "S"},
        }
    )
    assert s3_credentials(ceph) == S3Credentials(access_key_id="A", secret_access_key="S")


def test_pywren_ibm_cos_endpoint_from_region() -> None:
    extra = {
        "engine": "pywren",
        "pywren": {
            "storage_backend": "ibm_cos",
            "storage_bucket": "cos-bucket",
            "storage_backend_region": "eu-de",
        },
        "ibm_cos": {"api_key": "K"},
    }
    assert storage_location(build_config(extra)) == StorageLocation(
        kind="s3",
        bucket="cos-bucket",
        backend="ibm_cos",
        endpoint="https://s3.eu-de.cloud-object-storage.appdomain.cloud",
        region="eu-de",
    )


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"pywren": {"storage_backend": "ibm_cos", "storage_bucket": "bkt"}}, "'endpoint' or a 'region'"),
        ({"pywren": {"storage_backend": "ceph", "storage_bucket": "bkt"}}, "'ceph' storage section needs"),
        ({"pywren": {"storage_backend": "swift", "storage_bucket": "bkt"}}, "cannot be polled"),
    ],
)
def test_pywren_storage_location_refuses(extra: dict[str, Any], match: str) -> None:
    config = build_config({"engine": "pywren", **extra})
    with pytest.raises(ValueError, match=match):
        storage_location(config)


def test_pywren_refuses_a_lithops_section() -> None:
    with pytest.raises(ValueError, match="has a 'lithops' section"):
        build_config({"engine": "pywren", "lithops": {"backend": "localhost"}})


@pytest.mark.parametrize(
    ("pywren_section", "match"),
    [
        ({"compute_backend": "aws_lambda"}, "unknown pywren compute backend 'aws_lambda'"),
        ({"compute_backend": "code_engine"}, "unknown pywren compute backend 'code_engine'"),
        ({"storage_backend": "minio"}, "unknown pywren storage backend 'minio'"),
        ({"storage_backend": "aws_s3"}, "unknown pywren storage backend 'aws_s3'"),
        ({"compute_backend": "ibm_cf"}, "needs a 'storage_bucket'"),  # storage defaults to ibm_cos
    ],
)
def test_pywren_refuses_unknown_backends_and_missing_bucket(
    pywren_section: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        build_config({"engine": "pywren", "pywren": pywren_section})


def test_pywren_section_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="'pywren' section"):
        build_config({"engine": "pywren", "pywren": "localhost"})


def test_pywren_flat_overrides_land_in_the_pywren_section() -> None:
    overrides = {
        "runtime": "python3.10",
        "runtime_memory": 512,
        "workers": 4,
        "backend": "localhost",
        "storage": "ceph",
        "ceph": {"endpoint": "http://127.0.0.1:9000", "access_key": "A", "secret_key": "S"},
        "pywren": {"storage_bucket": "pw-bucket", "invoke_pool_threads": 8},
    }
    before = copy.deepcopy(overrides)
    config = build_config({"engine": "pywren"}, overrides=overrides)
    assert overrides == before
    assert config == {
        "pywren": {
            "storage_bucket": "pw-bucket",
            "invoke_pool_threads": 8,
            "runtime": "python3.10",
            "runtime_memory": 512,
            "workers": 4,
            "compute_backend": "localhost",
            "storage_backend": "ceph",
            "data_cleaner": False,
        },
        "ceph": {"endpoint": "http://127.0.0.1:9000", "access_key": "A", "secret_key": "S"},
    }
    assert "lithops" not in config and "localhost" not in config


def test_pywren_flat_backend_override_wins_over_the_extra() -> None:
    extra = {"engine": "pywren", "pywren": {"compute_backend": "ibm_cf", "storage_bucket": "bkt"}}
    config = build_config(extra, overrides={"backend": "localhost", "storage": "localhost"})
    assert compute_backend_name(config) == "localhost"
    assert storage_backend_name(config) == "localhost"
    assert config["pywren"]["storage_bucket"] == "bkt"


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"execution_timeout": 30}, "execution_timeout"),
        ({"mode": "localhost"}, "mode"),
        ({"chunksize": 2}, "chunksize"),
        ({"monitoring": "rabbitmq"}, "monitoring"),
        ({"log_level": "DEBUG"}, "log_level"),
        ({"lithops": {"execution_timeout": 30}}, "execution_timeout"),
    ],
)
def test_pywren_refuses_lithops_only_flat_keys(overrides: dict[str, Any], name: str) -> None:
    with pytest.raises(
        ValueError, match=f"'{name}' is a Lithops setting with no pywren-ibm-cloud equivalent"
    ):
        build_config({"engine": "pywren"}, overrides=overrides)


def test_lithops_config_building_unchanged_by_the_engine_key() -> None:
    config = build_config({"engine": "lithops"})
    assert "engine" not in config
    assert config["lithops"] == {
        "backend": "localhost",
        "mode": "localhost",
        "storage": "localhost",
        "data_cleaner": False,
    }
    assert engine_of(config) == LITHOPS
    assert compute_backend_name(config) == "localhost"
    assert storage_backend_name(config) == "localhost"


# -- the Connection form ----------------------------------------------------------------------


def test_pywren_form_fields_become_the_pywren_section() -> None:
    extra = {
        "engine": "pywren",
        "compute_backend": "ibm_cf",
        "storage_backend": "ibm_cos",
        "storage_bucket": "cos-bucket",
        "runtime": "me/rt:1",
        "region": "eu-de",
        "iam_api_key": "KEY",
    }
    expanded = expand_form_fields(extra)
    assert expanded == {
        "engine": "pywren",
        "pywren": {
            "compute_backend": "ibm_cf",
            "storage_backend": "ibm_cos",
            "storage_bucket": "cos-bucket",
            "runtime": "me/rt:1",
            "storage_backend_region": "eu-de",
        },
        "ibm_cos": {"api_key": "KEY"},
    }
    config = build_config(expanded)
    assert engine_of(config) == PYWREN
    assert storage_location(config) == StorageLocation(
        kind="s3",
        bucket="cos-bucket",
        backend="ibm_cos",
        endpoint="https://s3.eu-de.cloud-object-storage.appdomain.cloud",
        region="eu-de",
    )
    assert s3_credentials(config).iam_api_key == "KEY"


def test_pywren_form_prefixed_fields_and_pasted_sections() -> None:
    extra = {
        "extra__lithops__engine": "pywren",
        "extra__lithops__compute_backend": "localhost",
        "storage_backend": "ceph",
        "iam_api_key": "KEY",  # not ibm_cos: goes nowhere
        "lithops_config": json.dumps(
            {"pywren": {"runtime": "py", "workers": 3}, "ceph": {"endpoint": "http://c"}}
        ),
        "pywren": {"storage_bucket": "from-section", "workers": 5},
    }
    assert expand_form_fields(extra) == {
        "engine": "pywren",
        "pywren": {
            "runtime": "py",
            "workers": 5,
            "compute_backend": "localhost",
            "storage_backend": "ceph",
            "storage_bucket": "from-section",
        },
        "ceph": {"endpoint": "http://c"},
    }


def test_pywren_form_without_fields_is_just_the_engine() -> None:
    assert expand_form_fields({"engine": "pywren"}) == {"engine": "pywren", "pywren": {}}
    assert build_config(expand_form_fields({"engine": "pywren"}))["pywren"]["compute_backend"] == "localhost"


def test_lithops_form_keeps_an_explicit_engine_field() -> None:
    expanded = expand_form_fields(
        {"engine": "lithops", "compute_backend": "localhost", "storage_backend": "minio"}
    )
    assert expanded == {"engine": "lithops", "lithops": {"backend": "localhost", "storage": "minio"}}


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        ({"pywren": {"compute_backend": "ibm_cf"}}, ["endpoint", "namespace"]),
        ({"pywren": {"compute_backend": "ibm_cf"}, "ibm_cf": {"endpoint": "https://e"}}, ["namespace"]),
        ({"pywren": {"compute_backend": "ibm_cf"}, "ibm_cf": {"namespace": "ns"}}, ["endpoint"]),
        (
            {"pywren": {"compute_backend": "ibm_cf"}, "ibm_cf": {"endpoint": "https://e", "namespace": "ns"}},
            [],
        ),
        # Lithops' names do not count for pywren.
        (
            {"pywren": {"compute_backend": "ibm_cf"}, "ibm_cf": {"region": "eu-de", "namespace_id": "x"}},
            ["endpoint", "namespace"],
        ),
        ({"pywren": {"compute_backend": "localhost"}}, []),
        ({"pywren": {}}, []),
        ({"pywren": {"compute_backend": "docker"}}, []),
    ],
)
def test_missing_pywren_compute_keys(config: dict[str, Any], missing: list[str]) -> None:
    assert missing_compute_keys(config) == missing


def test_missing_pywren_compute_keys_accepts_the_regions_form() -> None:
    """pywren 1.7.3's ibm_cf config also takes one section per region."""
    config: dict[str, Any] = {
        "pywren": {"compute_backend": "ibm_cf"},
        "ibm_cf": {
            "regions": {
                "eu_gb": {
                    "endpoint": "https://eu-gb.functions.cloud.ibm.com",
                    "namespace": "ns",
                    "api_key": "k",
                }
            }
        },
    }
    assert missing_compute_keys(config) == []
    # A region that lacks a key is still reported.
    config["ibm_cf"]["regions"]["eu_gb"].pop("namespace")
    assert missing_compute_keys(config) == ["namespace"]


# -- pywren_options and call_timeout ----------------------------------------------------------


def test_importing_pywren_engine_does_not_import_pywren() -> None:
    code = (
        "import sys, pywren_deferrable.pywren_engine\n"
        "assert 'pywren_ibm_cloud' not in sys.modules, sorted(m for m in sys.modules if 'pywren_ibm' in m)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _spec(call_type: str, options: dict[str, Any], config: dict[str, Any] | None = None) -> JobSpec:
    return JobSpec(
        call_type=call_type,
        function=_noop,
        iterdata=[1, 2],
        config=config if config is not None else {"pywren": {"compute_backend": "localhost"}},
        reduce_function=_noop if call_type == "map_reduce" else None,
        options=options,
    )


def test_pywren_options_for_map_reduce() -> None:
    options = {
        "obj_chunk_size": 1024,
        "obj_chunk_number": 3,
        "obj_reduce_by_key": True,
        "spawn_reducer": 0,
        "extra_args": {"k": 1},
        "timeout": 30,
    }
    spec = _spec("map_reduce", options)
    assert pywren_options(spec) == {
        "chunk_size": 1024,
        "chunk_n": 3,
        "reducer_one_per_object": True,
        "extra_args": {"k": 1},
        "timeout": 30,
        "invoke_pool_threads": 500,
    }
    assert spec.options == options  # not mutated


def test_pywren_options_take_invoke_pool_threads_from_the_config() -> None:
    spec = _spec("map", {"spawn_reducer": 0}, {"pywren": {"invoke_pool_threads": 8}})
    assert pywren_options(spec) == {"invoke_pool_threads": 8}
    assert pywren_options(_spec("map", {}, {"pywren": {}})) == {"invoke_pool_threads": 500}
    assert pywren_options(_spec("map", {}, {})) == {"invoke_pool_threads": 500}


def test_pywren_options_for_call_async_have_no_pool() -> None:
    spec = _spec("call_async", {"extra_env": {"A": "1"}}, {"pywren": {"invoke_pool_threads": 8}})
    assert pywren_options(spec) == {"extra_env": {"A": "1"}}


@pytest.mark.parametrize(
    ("options", "config", "expected"),
    [
        ({"timeout": 42}, {"pywren": {"runtime_timeout": 120}}, 42.0),
        ({}, {"pywren": {"runtime_timeout": 120}}, 120.0),
        ({}, {"pywren": {}}, 600.0),
        ({"timeout": 0}, {"pywren": {"runtime_timeout": 0}}, 600.0),
        ({}, {"pywren": {"runtime_timeout": 120}, "lithops": {"execution_timeout": 30}}, 30.0),  # Lithops
        ({}, {"lithops": {}}, 1800.0),
    ],
)
def test_call_timeout(options: dict[str, Any], config: dict[str, Any], expected: float) -> None:
    timeout = call_timeout(_spec("map", options, config))
    assert isinstance(timeout, float)
    assert timeout == expected


def test_call_timeout_of_a_built_pywren_config() -> None:
    config = build_config({"engine": "pywren"}, overrides={"runtime_timeout": 90})
    assert config["pywren"]["runtime_timeout"] == 90
    assert call_timeout(_spec("map", {}, config)) == 90.0
    assert call_timeout(_spec("map", {}, build_config({"engine": "pywren"}))) == 600.0
