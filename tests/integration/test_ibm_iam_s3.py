"""The trigger's S3 access with an IBM Cloud IAM API key, against local stand-ins for IAM and
IBM COS (aiohttp on 127.0.0.1): the COS stand-in accepts only bearer tokens IAM issued."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from botocore.exceptions import ClientError
from ibm_iam_fakes import FakeClock, FakeCos, FakeIam, serve

from pywren_deferrable.config import S3Credentials
from pywren_deferrable.hooks.ibm_iam import IamAuthenticationError, shared_token_manager
from pywren_deferrable.hooks.s3_client_pool import active_clients, shared_s3_client
from pywren_deferrable.job import STORAGE_S3, StorageLocation
from pywren_deferrable.triggers.status import open_status_source

pytestmark = pytest.mark.integration

BUCKET = "iam-bucket"
OBJECTS = {
    "lithops.jobs/x-M000/00000/status.json": b'{"type": "__end__"}',
    "lithops.jobs/x-M000/00001/status.json": b'{"type": "__end__", "n": 1}',
    "other/thing": b"nope",
}


@dataclass
class Stack:
    iam: FakeIam
    cos: FakeCos
    api_key: str
    iam_url: str
    location: StorageLocation

    def credentials(self, api_key: str | None = None, **kwargs: str) -> S3Credentials:
        return S3Credentials(
            None, None, iam_api_key=api_key or self.api_key, iam_endpoint=self.iam_url, **kwargs
        )


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    api_key = f"APIKEY-{uuid.uuid4().hex}"  # unique: the token managers are process-wide
    iam = FakeIam(valid_keys={api_key})
    cos = FakeCos(iam=iam, bucket=BUCKET, objects=dict(OBJECTS))
    async with serve(iam) as iam_base, serve(cos) as cos_url:
        location = StorageLocation(kind=STORAGE_S3, bucket=BUCKET, backend="ibm_cos", endpoint=cos_url)
        yield Stack(iam, cos, api_key, iam_base + "/identity/token", location)
    assert active_clients() == 0


async def listing(source, prefix: str = "lithops.jobs/") -> list[str]:  # type: ignore[no-untyped-def]
    return [key async for page in source.list_keys(prefix) for key in page]


async def test_list_and_get_with_an_iam_api_key(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # botocore logs requests at debug level
    async with open_status_source(stack.location, stack.credentials()) as source:
        assert await listing(source) == sorted(k for k in OBJECTS if k.startswith("lithops.jobs/"))
        pages = [
            page
            async for page in source.list_objects("lithops.jobs/", "lithops.jobs/x-M000/00000/status.json")
        ]
        assert [o.key for page in pages for o in page] == ["lithops.jobs/x-M000/00001/status.json"]
        assert pages[0][0].modified > 0
        assert (
            await source.get("lithops.jobs/x-M000/00001/status.json")
            == OBJECTS["lithops.jobs/x-M000/00001/status.json"]
        )
        assert await source.get("lithops.jobs/missing") is None
    assert stack.iam.requests == 1  # one token for all requests
    assert stack.cos.rejected == 0
    assert set(stack.cos.seen_tokens) == {stack.iam.issued[0]}
    # The token is added after botocore logged the request: neither it nor the key is logged.
    assert "Sending http request" in caplog.text
    assert stack.iam.issued[0] not in caplog.text
    assert stack.api_key not in caplog.text


async def test_many_sources_share_one_client_and_one_token(stack: Stack) -> None:
    async def poll() -> list[str]:
        async with open_status_source(stack.location, stack.credentials()) as source:
            assert active_clients() == 1
            return await listing(source)

    results = await asyncio.gather(*(poll() for _ in range(20)))
    assert all(r == results[0] for r in results)
    assert stack.iam.requests == 1
    assert stack.cos.requests == 20


async def test_listing_survives_a_token_the_storage_rejects(stack: Stack) -> None:
    async with open_status_source(stack.location, stack.credentials()) as source:
        before = await listing(source)
        stack.iam.revoke_all()  # the token expires as far as COS is concerned
        assert await listing(source) == before  # 403 -> new token -> retried once
        assert stack.cos.rejected == 1
        assert stack.iam.requests == 2
        assert stack.cos.seen_tokens[-1] == stack.iam.issued[-1] != stack.iam.issued[0]
        # Concurrent requests rejected with the same old token cause one refresh.
        stack.iam.revoke_all()
        results = await asyncio.gather(*(listing(source) for _ in range(10)))
        assert all(r == before for r in results)
        assert stack.iam.requests == 3
        assert stack.cos.rejected == 1 + 10  # each rejected once, then served


async def test_token_is_renewed_before_it_expires(stack: Stack) -> None:
    clock = FakeClock()
    shared_token_manager(stack.api_key, stack.iam_url).clock = clock
    async with open_status_source(stack.location, stack.credentials()) as source:
        await listing(source)
        clock.advance(0.85 * stack.iam.expires_in)
        await listing(source)
    assert stack.iam.requests == 2
    assert stack.cos.rejected == 0  # renewed in time: no request was refused
    assert stack.cos.seen_tokens == stack.iam.issued


async def test_missing_permission_fails_after_one_retry(stack: Stack) -> None:
    stack.cos.deny_all = True
    async with open_status_source(stack.location, stack.credentials()) as source:
        with pytest.raises(ClientError) as info:
            await listing(source)
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    assert stack.cos.requests == 2  # the request and one retry with a new token
    assert stack.iam.requests == 2


async def test_bad_api_key_fails_before_reaching_storage(stack: Stack) -> None:
    from pywren_deferrable.triggers.job import is_transient

    bad_key = f"BAD-{uuid.uuid4().hex}"
    async with open_status_source(stack.location, stack.credentials(bad_key)) as source:
        with pytest.raises(IamAuthenticationError) as info:
            await listing(source)
    assert bad_key not in str(info.value)
    assert not is_transient(info.value)
    assert stack.cos.requests == 0


async def test_service_instance_header_only_where_needed(stack: Stack) -> None:
    credentials = stack.credentials(service_instance_id="crn:v1:bluemix:public:cloud-object-storage:x")
    async with shared_s3_client(
        endpoint=stack.location.endpoint, region=None, credentials=credentials
    ) as client:
        buckets = await client.list_buckets()
        await client.list_objects_v2(Bucket=BUCKET)
        await client.get_object(Bucket=BUCKET, Key="other/thing")
    assert [b["Name"] for b in buckets["Buckets"]] == [BUCKET]
    assert stack.cos.instance_ids == {
        "ListBuckets": "crn:v1:bluemix:public:cloud-object-storage:x",
        "ListObjectsV2": None,
        "GetObject": None,
    }


async def test_iam_and_hmac_clients_are_separate(stack: Stack) -> None:
    async with (
        open_status_source(stack.location, stack.credentials()),
        open_status_source(stack.location, S3Credentials("AKID", "SECRET")),
    ):
        assert active_clients() == 2


async def test_plain_http_to_a_remote_endpoint_is_refused(stack: Stack) -> None:
    remote = StorageLocation(kind=STORAGE_S3, bucket=BUCKET, backend="ibm_cos", endpoint="http://cos.example")
    with pytest.raises(ValueError, match="plain http"):
        async with open_status_source(remote, stack.credentials()):
            pass
    assert active_clients() == 0
