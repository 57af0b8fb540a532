"""S3-compatible storages (IBM COS, MinIO, Ceph, AWS S3): a shared aiobotocore client,
and a lean read path for polling.

Every S3-compatible Lithops backend is polled here: they all speak ``ListObjectsV2``
with ``StartAfter``, so an idle poll is one request. With HMAC keys (the common case),
lists and reads go through :mod:`.s3_lean` (botocore's signer, one aiohttp session per
event loop, a parser for the few fields read): ~5x less CPU per poll than the full
client. IBM IAM API keys, and credentials left to botocore's default chain, keep the
client for everything; writes and deletes always use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from pywren_deferrable.config import S3_STORAGE_BACKENDS, S3Credentials, s3_credentials, storage_location
from pywren_deferrable.hooks.s3_client_pool import ca_bundle, shared_s3_client
from pywren_deferrable.job import STORAGE_S3, StorageLocation
from pywren_deferrable.storages.base import LIST_PAGE_SIZE, ListedObject, StatusSource, keys_only
from pywren_deferrable.storages.s3_lean import LeanS3Reader, shared_http_session, tls_context

DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1,000 keys


class S3StatusSource:
    """A bucket on an S3-compatible endpoint, through an aiobotocore client.

    :param reader: reads (list, get) through the lean path instead of the client.
    """

    def __init__(self, client: Any, bucket: str, reader: LeanS3Reader | None = None) -> None:
        self._client = client
        self._bucket = bucket
        self._reader = reader
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    async def list_objects(self, prefix: str, start_after: str = "") -> AsyncIterator[list[ListedObject]]:
        if self._reader is not None:
            token: str | None = None
            while True:
                self._requests += 1
                objects, token = await self._reader.list_page(prefix, start_after, token)
                yield objects
                if token is None:
                    return
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": LIST_PAGE_SIZE}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            self._requests += 1
            page = await self._client.list_objects_v2(**kwargs)
            yield [
                ListedObject(item["Key"], item["LastModified"].timestamp())
                for item in page.get("Contents", ())
            ]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token
            kwargs.pop("StartAfter", None)

    def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        return keys_only(self.list_objects(prefix, start_after))

    async def put(self, key: str, data: bytes) -> None:
        self._requests += 1
        await self._client.put_object(Bucket=self._bucket, Key=key, Body=data)

    async def get(self, key: str) -> bytes | None:
        self._requests += 1
        if self._reader is not None:
            return await self._reader.get(key)
        try:
            response = await self._client.get_object(Bucket=self._bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def delete(self, keys: list[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            self._requests += 1
            await self._client.delete_objects(
                Bucket=self._bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            deleted += len(batch)
        return deleted


class S3Kind:
    """IBM COS, MinIO, Ceph and AWS S3 (and pywren-ibm-cloud's ibm_cos/ceph)."""

    name = STORAGE_S3
    lithops_backends = S3_STORAGE_BACKENDS
    needs_credentials = True

    def location(self, config: dict[str, Any]) -> StorageLocation:
        return storage_location(config)

    def credentials(self, config: dict[str, Any]) -> S3Credentials:
        return s3_credentials(config)

    @asynccontextmanager
    async def open(self, location: StorageLocation, credentials: Any) -> AsyncIterator[StatusSource]:
        credentials = credentials or S3Credentials(None, None)
        async with shared_s3_client(
            endpoint=location.endpoint, region=location.region, credentials=credentials
        ) as client:
            signing = lean_credentials(credentials)
            if signing is None:
                yield S3StatusSource(client, location.bucket)
                return
            async with shared_http_session() as http:
                endpoint = client.meta.endpoint_url
                tls = await tls_context(ca_bundle()) if endpoint.startswith("https:") else None
                reader = LeanS3Reader(http, endpoint, client.meta.region_name, location.bucket, signing, tls)
                yield S3StatusSource(client, location.bucket, reader)


def lean_credentials(credentials: S3Credentials) -> Credentials | None:
    """The keys the lean path signs with, or ``None`` where it does not apply: IAM API
    keys (bearer tokens) and keys left to botocore's default chain (environment, instance
    roles, refreshed on expiry) stay with the client."""
    if credentials.iam_api_key or not credentials.access_key_id or not credentials.secret_access_key:
        return None
    return Credentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token)


KIND = S3Kind()
