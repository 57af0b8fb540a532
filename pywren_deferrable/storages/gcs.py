"""Lithops' ``gcp_storage``: Google Cloud Storage through gcloud-aio-storage (aiohttp).

GCS lists objects with ``startOffset`` (inclusive), which is S3's ``StartAfter`` for the
keys the poller starts after (they never exist: they end with ``~``); keys are still
compared client-side, so a server that ignored the offset would cost more, never mislead.
The emulator or a private endpoint is the ``endpoint`` of the ``gcp_storage`` section,
or ``STORAGE_EMULATOR_HOST`` as for every Google client.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pywren_deferrable.job import StorageLocation
from pywren_deferrable.storages.base import (
    LIST_PAGE_SIZE,
    ListedObject,
    SharedClients,
    StatusSource,
    import_client,
    keys_only,
)

KIND_NAME = "gcs"
DELETE_CONCURRENCY = 32  # gcloud-aio-storage has no batch delete: one request per object


@dataclass(frozen=True)
class GcsCredentials:
    """Where the service account key is (Lithops' ``credentials_path``); ``None``: Google's
    default (``GOOGLE_APPLICATION_CREDENTIALS``, then the metadata server). A path, not a
    secret, but resolved from the Connection like every storage's credentials."""

    credentials_path: str | None = None


def _section(config: dict[str, Any]) -> dict[str, Any]:
    """The ``gcp_storage`` section over the ``gcp`` one, as Lithops merges them."""
    return {**(config.get("gcp") or {}), **(config.get("gcp_storage") or {})}


def _is_not_found(err: BaseException) -> bool:
    return getattr(err, "status", None) == 404


class GcsStatusSource:
    """A GCS bucket through a shared ``gcloud.aio.storage.Storage``."""

    def __init__(self, storage: Any, bucket: str) -> None:
        self._storage = storage
        self._bucket = bucket
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    async def list_objects(self, prefix: str, start_after: str = "") -> AsyncIterator[list[ListedObject]]:
        params: dict[str, str] = {
            "prefix": prefix,
            "maxResults": str(LIST_PAGE_SIZE),
            "fields": "items(name,updated),nextPageToken",
        }
        if start_after:
            params["startOffset"] = start_after
        while True:
            self._requests += 1
            page = await self._storage.list_objects(self._bucket, params=params)
            yield [
                ListedObject(
                    item["name"], datetime.fromisoformat(item["updated"].replace("Z", "+00:00")).timestamp()
                )
                for item in page.get("items", ())
                if item["name"] > start_after and item["name"].startswith(prefix)
            ]
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token

    def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        return keys_only(self.list_objects(prefix, start_after))

    async def get(self, key: str) -> bytes | None:
        self._requests += 1
        try:
            data: bytes = await self._storage.download(self._bucket, key)
        except Exception as err:
            if _is_not_found(err):
                return None
            raise
        return data

    async def put(self, key: str, data: bytes) -> None:
        self._requests += 1
        await self._storage.upload(self._bucket, key, data, content_type="application/octet-stream")

    async def _delete_one(self, semaphore: asyncio.Semaphore, key: str) -> int:
        async with semaphore:
            self._requests += 1
            try:
                await self._storage.delete(self._bucket, key)
            except Exception as err:
                if _is_not_found(err):
                    return 0
                raise
        return 1

    async def delete(self, keys: list[str]) -> int:
        semaphore = asyncio.Semaphore(DELETE_CONCURRENCY)
        return sum(await asyncio.gather(*(self._delete_one(semaphore, k) for k in keys)))


async def _make_client(spec: tuple[str | None, GcsCredentials]) -> Any:
    Storage = import_client("gcloud.aio.storage", "gcp").Storage

    endpoint, credentials = spec
    # An http:// endpoint is an emulator (no tokens, as gcloud-aio does for
    # STORAGE_EMULATOR_HOST); any other is Google's API behind a private name: authenticated.
    emulator = endpoint.startswith("http://") if endpoint else None
    return Storage(service_file=credentials.credentials_path, api_root=endpoint, api_is_dev=emulator)


async def _close_client(storage: Any) -> None:
    await storage.close()


_clients: SharedClients[Any] = SharedClients(_make_client, _close_client)


class GcsKind:
    """Lithops' ``gcp_storage`` backend."""

    name = KIND_NAME
    lithops_backends = frozenset({"gcp_storage"})
    needs_credentials = True

    def location(self, config: dict[str, Any]) -> StorageLocation:
        section = _section(config)
        bucket = section.get("storage_bucket")
        if not bucket:
            raise ValueError("the 'gcp_storage' storage section needs a 'storage_bucket'")
        return StorageLocation(
            kind=KIND_NAME,
            bucket=bucket,
            backend="gcp_storage",
            endpoint=section.get("endpoint") or None,
            region=section.get("region") or None,
        )

    def credentials(self, config: dict[str, Any]) -> GcsCredentials:
        path = _section(config).get("credentials_path")
        return GcsCredentials(os.path.expanduser(path) if path else None)  # as Lithops reads it

    @asynccontextmanager
    async def open(self, location: StorageLocation, credentials: Any) -> AsyncIterator[StatusSource]:
        credentials = credentials or GcsCredentials()
        key = (location.endpoint, credentials.credentials_path)
        async with _clients.borrow(key, (location.endpoint, credentials)) as storage:
            yield GcsStatusSource(storage, location.bucket)


KIND = GcsKind()
