"""Lithops' ``localhost`` storage: ``<root>/<bucket>/<key>`` on this machine's disk,
read in a worker thread so that the event loop never waits on the disk."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from pywren_deferrable.config import storage_location
from pywren_deferrable.job import STORAGE_LOCALHOST, StorageLocation
from pywren_deferrable.storages.base import LIST_PAGE_SIZE, ListedObject, StatusSource, keys_only


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

    def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        return keys_only(self.list_objects(prefix, start_after))

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


class LocalhostKind:
    """Lithops' (and pywren's) ``localhost`` storage: no client, no credentials."""

    name = STORAGE_LOCALHOST
    lithops_backends = frozenset({"localhost"})
    needs_credentials = False

    def location(self, config: dict[str, Any]) -> StorageLocation:
        return storage_location(config)

    def credentials(self, config: dict[str, Any]) -> None:
        return None

    @asynccontextmanager
    async def open(self, location: StorageLocation, credentials: Any) -> AsyncIterator[StatusSource]:
        assert location.root is not None  # checked by StorageLocation
        yield LocalStatusSource(location.root, location.bucket)


KIND = LocalhostKind()
