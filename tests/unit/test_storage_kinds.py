"""The storage kinds' pure parts: where a job lives (no secrets), which secrets its client
needs (never shown), and the registry that makes adding a storage touch nothing else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pywren_deferrable.config import build_lithops_config, storage_location
from pywren_deferrable.job import STORAGE_KINDS, JobRef, StorageLocation
from pywren_deferrable.storages import KINDS, kind_for_backend, storage_kind
from pywren_deferrable.storages.azure import AzureCredentials
from pywren_deferrable.storages.gcs import GcsCredentials
from pywren_deferrable.storages.redis import RedisCredentials, _sorts_wholly_before


def lithops(storage: str, **sections: dict[str, object]) -> dict[str, object]:
    return build_lithops_config({"lithops": {"backend": "localhost", "storage": storage}, **sections})


def test_every_kind_is_a_storage_location_kind_and_each_backend_has_one_kind() -> None:
    assert set(KINDS) == set(STORAGE_KINDS)
    backends = [b for kind in KINDS.values() for b in kind.lithops_backends]
    assert len(backends) == len(set(backends))
    assert kind_for_backend("gcp_storage") is KINDS["gcs"]
    assert kind_for_backend("swift") is None
    with pytest.raises(ValueError, match="'nfs' is not one of"):
        storage_kind("nfs")


def test_gcs_location_merges_gcp_section_as_lithops_does() -> None:
    config = lithops(
        "gcp_storage",
        gcp={"region": "europe-west1", "credentials_path": "/keys/sa.json"},
        gcp_storage={"storage_bucket": "bkt"},
    )
    assert storage_location(config) == StorageLocation(
        kind="gcs", bucket="bkt", backend="gcp_storage", region="europe-west1"
    )
    assert storage_kind("gcs").credentials(config) == GcsCredentials("/keys/sa.json")
    emulator = lithops("gcp_storage", gcp_storage={"storage_bucket": "bkt", "endpoint": "http://127.0.0.1:9"})
    assert storage_location(emulator).endpoint == "http://127.0.0.1:9"


def test_azure_location_is_the_account_url_and_the_key_stays_secret() -> None:
    section = {
        "storage_account_name": "acct1",
        "storage_account_key": "S3CR3TKEY==",
        "storage_bucket": "cont",
    }
    config = lithops("azure_storage", azure_storage=section)
    location = storage_location(config)
    assert location == StorageLocation(
        kind="azure", bucket="cont", backend="azure_storage", endpoint="https://acct1.blob.core.windows.net"
    )
    credentials = storage_kind("azure").credentials(config)
    assert credentials == AzureCredentials("acct1", "S3CR3TKEY==")
    assert "S3CR3TKEY" not in repr(credentials)
    connection_string = (
        "DefaultEndpointsProtocol=http;AccountName=a2;AccountKey=K3Y;BlobEndpoint=http://127.0.0.1:1/a2;"
    )
    by_string = lithops(
        "azure_storage", azure_storage={"connection_string": connection_string, "storage_bucket": "cont"}
    )
    assert storage_location(by_string).endpoint == "http://127.0.0.1:1/a2"
    assert "K3Y" not in json.dumps(storage_location(by_string).__dict__)
    assert "K3Y" not in repr(storage_kind("azure").credentials(by_string))


def test_redis_location_is_the_server_without_its_password() -> None:
    config = lithops("redis", redis={"host": "r.example", "port": 6380, "password": "PW", "ssl": True})
    location = storage_location(config)
    assert location == StorageLocation(
        kind="redis", bucket="storage", backend="redis", endpoint="rediss://r.example:6380/0"
    )
    credentials = storage_kind("redis").credentials(config)
    assert credentials == RedisCredentials(None, "PW")
    assert "PW" not in repr(credentials)


@pytest.mark.parametrize(
    ("storage", "sections", "match"),
    [
        ("gcp_storage", {"gcp_storage": {"region": "r"}}, "'gcp_storage'.*'storage_bucket'"),
        (
            "azure_storage",
            {"azure_storage": {"storage_account_name": "a"}},
            "'azure_storage'.*'storage_bucket'",
        ),
        ("azure_storage", {"azure_storage": {"storage_bucket": "c"}}, "'storage_account_name'"),
        ("redis", {"redis": {"port": 1}}, "'redis'.*'host'"),
        ("aliyun_oss", {"aliyun_oss": {"storage_bucket": "b"}}, "'aliyun_oss' cannot be polled"),
        ("oracle_oss", {"oracle_oss": {"storage_bucket": "b"}}, "'oracle_oss' cannot be polled"),
    ],
)
def test_storage_location_names_what_is_missing(
    storage: str, sections: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        storage_location(lithops(storage, **sections))


def test_jobref_with_a_new_storage_round_trips() -> None:
    location = StorageLocation(kind="redis", bucket="storage", backend="redis", endpoint="redis://h:1/0")
    job = JobRef("a1b2c3-0", ("M000",), {"M000": 2}, location, "map", "3.8.0")
    assert JobRef.from_dict(json.loads(json.dumps(job.to_dict()))) == job


@given(
    directory=st.text(alphabet="ab/~0", min_size=1, max_size=6).map(lambda s: s.rstrip("/") + "/"),
    start=st.text(alphabet="ab/~0", max_size=8),
    rest=st.text(alphabet="ab/~0", max_size=6),
)
def test_redis_prunes_only_directories_wholly_before_the_start(directory: str, start: str, rest: str) -> None:
    """A directory skipped by the Redis listing holds no key after the start key."""
    if _sorts_wholly_before(directory, start):
        assert directory + rest < start


def test_a_missing_client_library_names_its_extra() -> None:
    from pywren_deferrable.storages.base import import_client

    with pytest.raises(ImportError, match=r"pip install 'pywren-deferrable\[gcp\]'"):
        import_client("no_such_client_library", "gcp")


async def test_azure_errors_say_what_they_mean_to_the_trigger() -> None:
    """azure-core's exceptions are neither OSError nor botocore's: the azure source turns an
    unreachable service or a 5xx into a ConnectionError (retried up to max_outage) and a
    refused key into an error naming the account, not the key."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    from pywren_deferrable.storages.azure import AzureAccessRefused, AzureStatusSource
    from pywren_deferrable.triggers.job import is_transient

    class Container:
        account_name = "acct1"

        def __init__(self, error: Exception) -> None:
            self.error = error

        async def download_blob(self, key: str) -> None:
            raise self.error

        async def upload_blob(self, key: str, data: bytes, overwrite: bool) -> None:
            raise self.error

    busy = HttpResponseError(message="busy")
    busy.status_code = 503
    for error in (ServiceRequestError("Cannot connect to host"), busy):
        with pytest.raises(ConnectionError, match="acct1") as raised:
            await AzureStatusSource(Container(error)).get("k")
        assert is_transient(raised.value)
    refused = ClientAuthenticationError(message="Server failed to authenticate the request.")
    refused.status_code = 403
    with pytest.raises(
        AzureAccessRefused, match=r"'acct1' refused the Connection's credentials \(403"
    ) as denied:
        await AzureStatusSource(Container(refused)).put("k", b"x")
    assert not is_transient(denied.value)
    missing = HttpResponseError(message="nope")
    missing.status_code = 404
    assert await AzureStatusSource(Container(missing)).get("k") is None
