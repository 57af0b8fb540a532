"""Where the trigger (and the result fetcher) read a job's objects from.

Two sources with one small async interface: S3 (IBM COS, MinIO, Ceph, AWS S3) through a
shared aiobotocore client, and Lithops' ``localhost`` storage (a directory), read in a
worker thread so that the event loop never waits on the disk. Neither imports Lithops.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from botocore.exceptions import ClientError

from pywren_deferrable.config import S3Credentials
from pywren_deferrable.hooks.s3_client_pool import shared_s3_client
from pywren_deferrable.job import STORAGE_LOCALHOST, StorageLocation

LIST_PAGE_SIZE = 1000
DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1,000 keys


class StatusSource(Protocol):
    """Read access to one bucket, as much as polling and fetching need."""

    def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        """Yield pages of keys under ``prefix`` in lexicographic order, after ``start_after``."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` when it does not exist."""
        ...

    async def delete(self, keys: list[str]) -> int:
        """Delete ``keys``; return how many were deleted."""
        ...

    @property
    def requests(self) -> int:
        """Requests sent so far (for progress logs and benchmarks)."""
        ...


class S3StatusSource:
    """A bucket on an S3-compatible endpoint, through an aiobotocore client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    async def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": LIST_PAGE_SIZE}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            self._requests += 1
            page = await self._client.list_objects_v2(**kwargs)
            yield [item["Key"] for item in page.get("Contents", ())]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token
            kwargs.pop("StartAfter", None)

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


class LocalStatusSource:
    """Lithops' ``localhost`` storage: ``<root>/<bucket>/<key>`` on this machine's disk."""

    def __init__(self, root: str, bucket: str) -> None:
        self._base = os.path.join(root, bucket)
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    def _path(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self._base, key))
        if not path.startswith(self._base + os.sep):
            raise ValueError(f"key {key!r} leaves the bucket directory")
        return path

    def _walk(self, prefix: str) -> list[str]:
        # Only the directory that can hold the prefix is walked, not the whole bucket.
        directory = os.path.dirname(self._path(prefix + "x"))
        keys: list[str] = []
        if not os.path.isdir(directory):
            return keys
        for dirpath, _dirs, files in os.walk(directory):
            for name in files:
                key = os.path.relpath(os.path.join(dirpath, name), self._base).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        keys.sort()
        return keys

    async def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        self._requests += 1
        keys = await asyncio.to_thread(self._walk, prefix)
        keys = [k for k in keys if k > start_after] if start_after else keys
        for start in range(0, len(keys), LIST_PAGE_SIZE):
            yield keys[start : start + LIST_PAGE_SIZE]

    def _read(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    async def get(self, key: str) -> bytes | None:
        self._requests += 1
        return await asyncio.to_thread(self._read, key)

    def _remove(self, keys: Iterable[str]) -> int:
        deleted = 0
        for key in keys:
            try:
                os.remove(self._path(key))
                deleted += 1
            except FileNotFoundError:
                pass
        return deleted

    async def delete(self, keys: list[str]) -> int:
        self._requests += 1
        return await asyncio.to_thread(self._remove, keys)


@asynccontextmanager
async def open_status_source(
    location: StorageLocation, credentials: S3Credentials | None
) -> AsyncIterator[StatusSource]:
    """Open the source for ``location``; S3 sources borrow the shared client."""
    if location.kind == STORAGE_LOCALHOST:
        assert location.root is not None  # checked by StorageLocation
        yield LocalStatusSource(location.root, location.bucket)
        return
    async with shared_s3_client(
        endpoint=location.endpoint,
        region=location.region,
        credentials=credentials or S3Credentials(None, None),
    ) as client:
        yield S3StatusSource(client, location.bucket)
