"""The dispatch plan: secrets out and back in, the stored form, the chunk arithmetic."""

from __future__ import annotations

import json

import pytest

from pywren_deferrable.dispatch.plan import (
    Chunk,
    Cursor,
    DispatchPlan,
    PlanError,
    dispatched_through,
    find_secrets,
    restore_secrets,
    running_chunks,
    strip_secrets,
)
from pywren_deferrable.job import (
    DISPATCH_FOLDER,
    JobRef,
    StorageLocation,
    dispatch_cursor_key,
    dispatch_plan_key,
    parse_job_object_key,
)

OW_SECRET = "23bc46b1-71f6-4ed5:SENTINEL-ow-secret-0001"
HMAC_SECRET = "SENTINEL-hmac-secret-0002"
HMAC_ID = "SENTINEL-hmac-id-0003"
IAM_KEY = "SENTINEL-iam-key-0004"


def connection_config() -> dict:
    """What LithopsHook builds from a Connection (login/password -> the storage HMAC keys)."""
    return {
        "lithops": {"backend": "openwhisk", "storage": "minio", "data_cleaner": False},
        "openwhisk": {"endpoint": "https://127.0.0.1:1", "namespace": "guest", "api_key": OW_SECRET},
        "minio": {
            "endpoint": "http://127.0.0.1:2",
            "storage_bucket": "b",
            "access_key_id": HMAC_ID,
            "secret_access_key": HMAC_SECRET,
        },
        "ibm": {"iam_api_key": IAM_KEY},
    }


def lithops_config() -> dict:
    """What Lithops passes on in a payload: defaults added, keys copied between sections,
    tokens cached."""
    config = json.loads(json.dumps(connection_config()))
    config["openwhisk"].update(max_workers=4, runtime_memory=256, user_agent="lithops/3.8")
    config["ibm_cf"] = {"iam_api_key": IAM_KEY, "token": "SENTINEL-cached-token", "token_expiry_time": 99}
    config["ibm_cos"] = {"api_key": IAM_KEY, "region": "us-east"}
    return config


def test_secrets_leave_and_come_back_from_the_connection():
    refs = find_secrets(lithops_config(), connection_config())
    stripped = strip_secrets(lithops_config(), refs)
    text = json.dumps(stripped)
    for sentinel in (OW_SECRET, HMAC_SECRET, HMAC_ID, IAM_KEY, "SENTINEL-cached-token"):
        assert sentinel not in text
    by_path = {r.path: r.source for r in refs}
    # Copied by Lithops from the "ibm" section: restored from there.
    assert by_path[("ibm_cf", "iam_api_key")] == ("ibm", "iam_api_key")
    assert by_path[("ibm_cos", "api_key")] == ("ibm", "iam_api_key")
    # Lithops' cached token is dropped, not restored.
    assert by_path[("ibm_cf", "token")] is None
    restored = restore_secrets(stripped, refs, connection_config())
    expected = lithops_config()
    del expected["ibm_cf"]["token"], expected["ibm_cf"]["token_expiry_time"]
    assert restored == expected
    assert stripped["openwhisk"]["max_workers"] == 4  # non-secrets stay


def test_a_secret_only_lithops_knows_cannot_be_planned():
    config = lithops_config()
    config["minio"]["secret_access_key"] = "not-in-the-connection"
    with pytest.raises(PlanError, match=r"minio\.secret_access_key .* not in the Connection"):
        find_secrets(config, connection_config())


def test_a_secret_removed_from_the_connection_is_a_clear_error():
    refs = find_secrets(lithops_config(), connection_config())
    stripped = strip_secrets(lithops_config(), refs)
    connection = connection_config()
    del connection["openwhisk"]["api_key"]
    with pytest.raises(PlanError, match=r"no longer has openwhisk\.api_key") as err:
        restore_secrets(stripped, refs, connection)
    assert OW_SECRET not in str(err.value)


def plan(pending: int = 4, chunksize: int = 1, direct: int = 2) -> DispatchPlan:
    def ids(chunk: int) -> tuple[str, ...]:
        return tuple(f"{i:05d}" for i in range(chunk * chunksize, (chunk + 1) * chunksize))

    refs = find_secrets(lithops_config(), connection_config())
    return DispatchPlan(
        backend="openwhisk",
        target={"endpoint": "https://x", "namespace": "guest", "package": "p", "action": "a"},
        max_workers=direct,
        chunksize=chunksize,
        direct=tuple(ids(c) for c in range(direct)),
        pending=tuple(
            Chunk(ids(c), {"data_byte_strs": [f"s{c}"] * chunksize}) for c in range(direct, direct + pending)
        ),
        payload={"config": strip_secrets(lithops_config(), refs), "data_byte_ranges": [], "job_id": "M000"},
        drop=("data_byte_ranges",),
        secrets=tuple(refs),
    )


def test_plan_round_trips_and_builds_lithops_payloads():
    original = plan()
    loaded = DispatchPlan.from_json(original.to_json())
    assert loaded == original
    payload = loaded.chunk_payload(1, connection_config(), now=123.0)
    assert payload["call_ids"] == ["00003"]
    assert payload["data_byte_strs"] == ["s3"]
    assert "data_byte_ranges" not in payload  # as _invoke_task deletes it for inline data
    assert payload["host_submit_tstamp"] == 123.0
    assert payload["config"]["openwhisk"]["api_key"] == OW_SECRET
    assert payload["job_id"] == "M000"
    assert OW_SECRET not in original.to_json().decode()


@pytest.mark.parametrize(
    "raw",
    [b"not json", b'{"version": 99}', b'{"version": 1, "backend": "openwhisk"}', b"[]"],
)
def test_an_unreadable_plan_is_a_plan_error(raw):
    with pytest.raises(PlanError):
        DispatchPlan.from_json(raw)


def test_cursor_moves_past_chunks_whose_calls_showed_up():
    p = plan(pending=4)  # pending chunks are calls 00002..00005
    assert dispatched_through(p, 0, set()) == 0
    assert dispatched_through(p, 0, {"00000", "00003"}) == 2  # 00003 is pending chunk 1
    assert dispatched_through(p, 3, {"00003"}) == 3  # never backwards


def test_running_chunks_counts_first_wave_and_dispatched_until_done():
    p = plan(pending=4, chunksize=2, direct=2)  # direct 0-1, 2-3; pending 4-5, 6-7, ...
    assert running_chunks(p, 0, set()) == 2
    assert running_chunks(p, 1, {"00000", "00001"}) == 2
    # A chunk runs until its last call ends.
    assert running_chunks(p, 1, {"00000", "00001", "00002", "00004"}) == 2
    assert running_chunks(p, 1, {f"{i:05d}" for i in range(6)}) == 0


def test_cursor_json():
    assert Cursor.from_json(None).dispatched == 0
    assert Cursor.from_json(Cursor(7).to_json()).dispatched == 7
    for bad in (b"{}", b'{"dispatched": -1}', b'{"dispatched": true}', b"x"):
        with pytest.raises(PlanError):
            Cursor.from_json(bad)


def test_plan_keys_live_under_the_job_prefix_and_are_no_calls():
    prefix = "lithops.jobs/a1b2c3-0-M000/"
    for key in (dispatch_plan_key("a1b2c3-0", "M000"), dispatch_cursor_key("a1b2c3-0", "M000")):
        assert key.startswith(prefix) and DISPATCH_FOLDER in key
        assert parse_job_object_key(prefix, key) is None


def test_jobref_names_the_jobs_with_a_plan():
    storage = StorageLocation(kind="s3", bucket="bkt", backend="minio", endpoint="http://x")
    ref = JobRef("a1b2c3-0", ("M000",), {"M000": 8}, storage, "map", "3.8.0", dispatch=("M000",))
    assert JobRef.from_dict(ref.to_dict()) == ref
    assert ref.dispatch_plan_key("M000") == dispatch_plan_key("a1b2c3-0", "M000")
    older = ref.to_dict()
    del older["dispatch"]  # a JobRef from before dispatch plans
    assert JobRef.from_dict(older).dispatch == ()
    with pytest.raises(ValueError, match="dispatch names job 'R000'"):
        JobRef("a1b2c3-0", ("M000",), {"M000": 8}, storage, "map", "3.8.0", dispatch=("R000",))
