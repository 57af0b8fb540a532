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
from typing import Any, NamedTuple, Protocol

from botocore.exceptions import ClientError

from pywren_deferrable.config import S3Credentials
from pywren_deferrable.hooks.s3_client_pool import shared_s3_client
from pywren_deferrable.job import STORAGE_LOCALHOST, StorageLocation

LIST_PAGE_SIZE = 1000
DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1,000 keys


class ListedObject(NamedTuple):
    """One key of a listing and when it was written (epoch seconds)."""

    key: str
    modified: float


class StatusSource(Protocol):
    """Access to one bucket, as much as polling, fetching and cleaning need."""

    def list_objects(self, prefix: str, start_after: str = "") -> AsyncIterator[list[ListedObject]]:
        """Yield pages of objects under ``prefix`` in lexicographic order, after ``start_after``."""
        ...

    def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        """Like :meth:`list_objects`, keys only."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` when it does not exist."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Write an object."""
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

    async def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        async for page in self.list_objects(prefix, start_after):
            yield [item.key for item in page]

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

    def _walk(self, prefix: str, start_after: str) -> list[ListedObject]:
        # Only the directory that can hold the prefix is walked, not the whole bucket.
        directory = os.path.dirname(self._path(prefix + "x"))
        found: list[ListedObject] = []
        if not os.path.isdir(directory):
            return found
        for dirpath, _dirs, files in os.walk(directory):
            for name in files:
                path = os.path.join(dirpath, name)
                key = os.path.relpath(path, self._base).replace(os.sep, "/")
                if key.startswith(prefix) and key > start_after:
                    try:
                        found.append(ListedObject(key, os.stat(path).st_mtime))
                    except FileNotFoundError:  # deleted while we walked
                        continue
        found.sort()
        return found

    async def list_objects(self, prefix: str, start_after: str = "") -> AsyncIterator[list[ListedObject]]:
        self._requests += 1
        found = await asyncio.to_thread(self._walk, prefix, start_after)
        for start in range(0, len(found), LIST_PAGE_SIZE):
            yield found[start : start + LIST_PAGE_SIZE]

    async def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        async for page in self.list_objects(prefix, start_after):
            yield [item.key for item in page]

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    async def put(self, key: str, data: bytes) -> None:
        self._requests += 1
        await asyncio.to_thread(self._write, key, data)

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
