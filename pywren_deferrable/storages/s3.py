"""S3-compatible storages (IBM COS, MinIO, Ceph, AWS S3): a shared aiobotocore client.

Every S3-compatible Lithops backend is polled here: they all speak ``ListObjectsV2``
with ``StartAfter``, so an idle poll is one request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from botocore.exceptions import ClientError

from pywren_deferrable.config import S3_STORAGE_BACKENDS, S3Credentials, s3_credentials, storage_location
from pywren_deferrable.hooks.s3_client_pool import shared_s3_client
from pywren_deferrable.job import STORAGE_S3, StorageLocation
from pywren_deferrable.storages.base import LIST_PAGE_SIZE, ListedObject, StatusSource, keys_only

DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1,000 keys


class S3StatusSource:
    """A bucket on an S3-compatible endpoint, through an aiobotocore client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    async def list_objects(self, prefix: str, start_after: str = "") -> AsyncIterator[list[ListedObject]]:
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
        async with shared_s3_client(
            endpoint=location.endpoint,
            region=location.region,
            credentials=credentials or S3Credentials(None, None),
        ) as client:
            yield S3StatusSource(client, location.bucket)


KIND = S3Kind()
