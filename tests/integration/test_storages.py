"""The non-S3 Lithops storages, each on the real local server its maker publishes:
Google Cloud Storage (fake-gcs-server), Azure Blob (Azurite), Redis (redis-server).

For each: the status source's contract (listing after a start key, pages, get/put/delete,
request counting), then a whole task: the operator submits a Lithops job (localhost
compute, the storage backend under test), defers, the trigger polls the storage through
its asynchronous client, the task resumes, fetches the results and cleans the job.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from payloads.functions import add, big_result_after_a_moment, fail_on
from storage_servers import AzuriteServer, FakeGcsServer, RedisServer, environment

from pywren_deferrable import PyWrenMapOperator
from pywren_deferrable.config import build_config, storage_location
from pywren_deferrable.job import JobRef, StorageLocation
from pywren_deferrable.storages import storage_kind
from pywren_deferrable.triggers.job import PyWrenJobTrigger
from pywren_deferrable.triggers.status import StatusSource, open_status_source

pytestmark = pytest.mark.integration

STORAGES = ("gcs", "azure", "redis")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[FakeGcsServer]:
    server = FakeGcsServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    server = AzuriteServer().start()
    yield server
    server.stop()


@dataclass
class Storage:
    """One storage under test: its Connection extra, the environment its clients need,
    and the secrets that must never reach trigger kwargs."""

    kind: str
    extra: dict[str, Any]
    env: dict[str, str]
    secrets: list[str]

    @property
    def config(self) -> dict[str, Any]:
        return build_config(self.extra)

    @property
    def location(self) -> StorageLocation:
        return storage_location(self.config)

    @property
    def credentials(self) -> Any:
        return storage_kind(self.kind).credentials(self.config)


def _create_container(azurite: AzuriteServer, container: str) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(azurite.account_url, credential=azurite.key)
    service.create_container(container)


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    """Each storage, with a fresh bucket (GCS, Azure) or database contents (Redis)."""
    lithops = {
        "backend": "localhost",
        "storage": {"gcs": "gcp_storage", "azure": "azure_storage"}.get(request.param, request.param),
    }
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    if request.param == "gcs":
        server: Any = request.getfixturevalue("gcs_server")
        server.create_bucket(bucket)
        value = Storage(
            "gcs",
            {"lithops": lithops, "gcp": {"region": "local"}, "gcp_storage": {"storage_bucket": bucket}},
            {"STORAGE_EMULATOR_HOST": server.url},
            [],
        )
    elif request.param == "azure":
        server = request.getfixturevalue("azurite")
        section = {"storage_account_name": server.account, "storage_account_key": server.key}
        value = Storage(
            "azure",
            {"lithops": lithops, "azure_storage": {**section, "storage_bucket": bucket}},
            server.proxy_env(),
            [server.key],
        )
    else:
        server = request.getfixturevalue("redis_server")
        section = {"host": "127.0.0.1", "port": server.port, "password": server.password}
        value = Storage("redis", {"lithops": lithops, "redis": section}, {}, [server.password])
    with environment(value.env):
        if request.param == "azure":
            _create_container(server, bucket)
        yield value
    if request.param == "redis":
        import redis

        redis.Redis(port=server.port, password=server.password).flushdb()


@pytest.fixture
def conn(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps({"conn_type": "lithops", "extra": storage.extra})
    )
    return "lithops_default"


async def all_keys(source: StatusSource, prefix: str = "") -> list[str]:
    return [key async for page in source.list_keys(prefix) for key in page]


# -- the status source's contract ------------------------------------------------------


async def test_source_lists_after_a_start_key_in_pages(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = __import__(f"pywren_deferrable.storages.{storage.kind}", fromlist=["LIST_PAGE_SIZE"])
    monkeypatch.setattr(module, "LIST_PAGE_SIZE", 2)
    prefix = "lithops.jobs/a1b2c3-0-M000/"
    keys = [f"{prefix}{call:05d}/{name}" for call in range(4) for name in ("act.init", "status.json")]
    async with open_status_source(storage.location, storage.credentials) as source:
        for key in [*keys, "lithops.jobs/a1b2c3-0-M0001/00000/status.json", "other/key"]:
            await source.put(key, key.encode())
        assert await all_keys(source, prefix) == keys
        start_after = f"{prefix}00001/~"
        pages = [page async for page in source.list_objects(prefix, start_after)]
        assert [o.key for page in pages for o in page] == keys[4:]
        assert all(len(page) <= 2 for page in pages)
        assert all(abs(o.modified - pages[0][0].modified) < 120 for page in pages for o in page)
        before = source.requests
        assert await all_keys(source, f"{prefix}00009/") == []
        assert await source.get(keys[1]) == keys[1].encode()
        assert await source.get(f"{prefix}00009/status.json") is None
        assert source.requests > before
        assert await source.delete([*keys[:4], f"{prefix}00009/status.json"]) >= 4
        assert await all_keys(source, prefix) == keys[4:]
        assert await source.get("other/key") == b"other/key"


async def test_listing_after_any_start_key_is_the_sorted_tail(storage: Storage) -> None:
    """Against a brute-force filter: whatever the start key (an existing key, a directory,
    a key between calls, past the end), the listing is exactly the keys after it, in order."""
    import random

    rnd = random.Random(5)
    prefix = "lithops.jobs/a1b2c3-1-M000/"
    calls = sorted(rnd.sample(range(200), 25))
    names = ["0a1b2c3d4e5f.init", "status.json", "output.pickle", "9f8e7d6c5b4a.init"]
    keys = sorted(
        {f"{prefix}{c:05d}/{rnd.choice(names)}" for c in calls for _ in range(2)}
        | {f"{prefix}aggdata.pickle"}
    )
    starts = [
        "",
        prefix,
        *rnd.sample(keys, 6),
        f"{prefix}00050/~",
        f"{prefix}0010",
        f"{prefix}~",
        f"{prefix}00199/status.json",
    ]
    async with open_status_source(storage.location, storage.credentials) as source:
        await asyncio.gather(*(source.put(k, b"") for k in keys))
        for start in starts:
            listed = [o.key async for page in source.list_objects(prefix, start) for o in page]
            assert listed == [k for k in keys if k > start], start


async def test_clients_are_shared_and_closed(storage: Storage) -> None:
    module = __import__(f"pywren_deferrable.storages.{storage.kind}", fromlist=["_clients"])
    async with (
        open_status_source(storage.location, storage.credentials) as one,
        open_status_source(storage.location, storage.credentials) as two,
    ):
        assert len(module._clients) == 1
        await one.put("x/1", b"1")
        assert await two.get("x/1") == b"1"
    assert len(module._clients) == 0


def test_location_and_credentials_keep_secrets_apart(storage: Storage) -> None:
    location = json.dumps(storage.location.__dict__)
    assert storage.location.kind == storage.kind
    for secret in storage.secrets:
        assert secret not in location
        assert secret not in repr(storage.credentials)


# -- a whole task: operator -> trigger -> results -> clean_data --------------------------


class FakeTI:
    dag_id, run_id, task_id, map_index, try_number = "dag", "run-1", "t", -1, 1

    def xcom_pull(self, task_ids: str) -> Any:
        raise KeyError(task_ids)


def defer(op: PyWrenMapOperator, storage: Storage) -> dict[str, Any]:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": FakeTI()})
    kwargs = deferred.value.trigger.serialize()[1]
    text = json.dumps(kwargs)
    for secret in storage.secrets:
        assert secret not in text
    return kwargs


async def test_operator_trigger_results_clean_data(storage: Storage, conn: str) -> None:
    async with open_status_source(storage.location, storage.credentials) as source:
        await source.put("lithops.jobs/ffffff-0-M000/00000/status.json", b"{}")  # someone else's job
    op = PyWrenMapOperator(
        task_id="t",
        map_function=add,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 10},
        clean_data=True,
        poll_interval=1,
    )
    kwargs = defer(op, storage)
    job = JobRef.from_dict(kwargs["job"])
    assert job.storage == storage.location
    event = dict((await PyWrenJobTrigger(**kwargs).wait_for_event()).payload)
    assert event["status"] == "success", event
    assert op.execute_complete({"ti": FakeTI()}, event) == [11, 12, 13]
    async with open_status_source(storage.location, storage.credentials) as source:
        left = await all_keys(source, "lithops.jobs/")
        assert left == ["lithops.jobs/ffffff-0-M000/00000/status.json"]
        assert not [k for k in await all_keys(source) if k.startswith("pywren-deferrable/")]
    if storage.kind == "redis":  # nor any of the job's directory sets, nor their names
        import redis

        raw = redis.Redis(port=storage.extra["redis"]["port"], password=storage.extra["redis"]["password"])
        assert raw.keys(f"storage/lithops.jobs/{job.executor_id}*") == []
        assert raw.smembers("storage/lithops.jobs/") == {b"ffffff-0-M000/"}


async def test_large_results_and_a_failed_call(storage: Storage, conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=big_result_after_a_moment, map_iterdata=[1, 2], poll_interval=1
    )
    event = dict((await PyWrenJobTrigger(**defer(op, storage)).wait_for_event()).payload)
    assert op.execute_complete({"ti": FakeTI()}, event) == ["1" * 20000, "2" * 20000]
    failing = PyWrenMapOperator(
        task_id="t", map_function=fail_on, map_iterdata=[1, 3], fail_fast=False, poll_interval=1
    )
    event = dict((await PyWrenJobTrigger(**defer(failing, storage)).wait_for_event()).payload)
    assert event["status"] == "failed"
    assert event["failed_calls"] == {"M000": ["00001"]}
    with pytest.raises(AirflowException, match=r"(?s)Traceback.*ValueError: boom on 3"):
        failing.execute_complete({"ti": FakeTI()}, event)


def test_connection_test_button(storage: Storage, conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pywren_deferrable.hooks.lithops import LithopsHook

    ok, message = LithopsHook(conn).test_connection()
    assert ok, message
    assert storage.location.bucket in message
    wrong = json.loads(json.dumps(storage.extra))
    wrong.setdefault("gcp_storage", {})["storage_bucket"] = "no-such-bucket-here"
    wrong.setdefault("azure_storage", {})["storage_bucket"] = "no-such-bucket-here"
    wrong.setdefault("redis", {})["password"] = "wrong-password"
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps({"conn_type": "lithops", "extra": wrong}))
    ok, message = LithopsHook(conn).test_connection()
    assert not ok
    assert "wrong-password" not in message


async def test_gcs_endpoint_from_the_connection(
    gcs_server: FakeGcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``gcp_storage.endpoint`` of the Connection reaches the emulator without
    ``STORAGE_EMULATOR_HOST``; an https endpoint is Google's API and is authenticated."""
    from pywren_deferrable.storages.gcs import _make_client

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    bucket = gcs_server.create_bucket(f"test-{uuid.uuid4().hex[:12]}")
    extra = {"lithops": {"storage": "gcp_storage"}, "gcp": {"region": "r"}}
    config = build_config({**extra, "gcp_storage": {"storage_bucket": bucket, "endpoint": gcs_server.url}})
    async with open_status_source(
        storage_location(config), storage_kind("gcs").credentials(config)
    ) as source:
        await source.put("a/b", b"1")
        assert await all_keys(source, "a/") == ["a/b"]
    private = await _make_client(
        ("https://storage.example.internal", storage_kind("gcs").credentials(config))
    )
    try:
        assert private._api_is_dev is False
    finally:
        await private.close()
