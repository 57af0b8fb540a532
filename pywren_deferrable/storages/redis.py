"""Lithops' ``redis`` storage, through ``redis.asyncio``.

Lithops 3.8 (``lithops/storage/backends/redis/redis.py``) keeps an object's bytes at
``<bucket>/<key>`` and mirrors the key's directories as sets: ``<bucket>/<dir>/`` holds
the names of the objects in that directory and ``<sub>/`` for its subdirectories. So
there is nothing to SCAN: listing a job prefix is walking its directory sets, one
pipelined round trip per level (the job's directory, then its calls' directories), and
"start after" is pruning the subdirectories that sort wholly before the start key, so
an idle poll reads the job directory's members (one per call) and only the directories
of the calls not yet finished. Redis keeps no write time; ``OBJECT IDLETIME`` of an
object nobody reads (a call's ``.init``) is how long ago it was written.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pywren_deferrable.job import StorageLocation
from pywren_deferrable.storages.base import (
    LIST_PAGE_SIZE,
    ListedObject,
    SharedClients,
    StatusSource,
    import_client,
    keys_only,
    secret_digest,
)

KIND_NAME = "redis"
LITHOPS_BUCKET = "storage"  # Lithops' redis backend fixes storage_bucket to this
DELETE_BATCH = 500

# Deletes KEYS and their names from their directory sets, then removes the name of each
# directory left empty from its parent, up to (not including) the bucket's own set ARGV[1].
# One script, so a concurrent writer never sees a half-removed directory.
_DELETE_SCRIPT = """
local removed = 0
local floor = string.len(ARGV[1])
for _, key in ipairs(KEYS) do
  removed = removed + redis.call('DEL', key)
  local path = key
  while true do
    local parent, name = string.match(path, '^(.*/)([^/]+/?)$')
    if not parent or string.len(parent) <= floor then break end
    redis.call('SREM', parent, name)
    if redis.call('EXISTS', parent) == 1 then break end
    path = parent
  end
end
return removed
"""


@dataclass(frozen=True)
class RedisCredentials:
    """The Redis ACL user and password, if any. Never serialized, never logged."""

    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"RedisCredentials(username={self.username!r}, password={'***' if self.password else None})"


def _sorts_wholly_before(directory: str, start_after: str) -> bool:
    """True when every key under ``directory`` sorts before ``start_after`` (so the
    directory need not be read): ``start_after`` is greater and does not lie inside it."""
    return start_after > directory and not start_after.startswith(directory)


class RedisStatusSource:
    """The objects Lithops' redis backend wrote, read through a ``redis.asyncio`` client.

    :param client: a ``redis.asyncio.Redis``.
    :param bucket: Lithops' bucket (``storage``).
    """

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        self._root = f"{bucket}/"
        self._requests = 0

    @property
    def requests(self) -> int:
        """Round trips sent (a pipeline is one)."""
        return self._requests

    def _key(self, key: str) -> str:
        return self._root + key

    async def list_objects(self, prefix: str, start_after: str = "") -> AsyncIterator[list[ListedObject]]:
        full_prefix = self._key(prefix)
        full_start = self._key(start_after) if start_after else ""
        top = full_prefix[: full_prefix.rfind("/") + 1]
        self._requests += 1
        members = await self._client.smembers(top)
        pending = [top + m.decode() for m in members]
        files: list[str] = []
        while pending:
            dirs: list[str] = []
            for name in pending:
                if not name.startswith(full_prefix) and not full_prefix.startswith(name):
                    continue
                if name.endswith("/"):
                    if not (full_start and _sorts_wholly_before(name, full_start)):
                        dirs.append(name)
                elif name.startswith(full_prefix) and name > full_start:
                    files.append(name)
            if not dirs:
                break
            self._requests += 1
            async with self._client.pipeline(transaction=False) as pipe:
                for name in dirs:
                    pipe.smembers(name)
                results = await pipe.execute()
            pending = [d + m.decode() for d, found in zip(dirs, results, strict=True) for m in found]
        files.sort()
        for start in range(0, len(files), LIST_PAGE_SIZE):
            batch = files[start : start + LIST_PAGE_SIZE]
            self._requests += 1
            async with self._client.pipeline(transaction=False) as pipe:
                for name in batch:
                    pipe.object("idletime", name)
                idle = await pipe.execute(raise_on_error=False)
            now = time.time()
            offset = len(self._root)
            page = []
            for name, seconds in zip(batch, idle, strict=True):
                if seconds is None:
                    # Its value is gone (evicted, or deleted mid-listing): dropped, as
                    # Lithops' own listing drops a name without a value.
                    continue
                # An LFU eviction policy keeps no idle time: "written now" never declares
                # a call lost too early; one that dies is then found by start_timeout.
                age = seconds if isinstance(seconds, int) else 0
                page.append(ListedObject(name[offset:], now - age))
            yield page

    def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        return keys_only(self.list_objects(prefix, start_after))

    async def get(self, key: str) -> bytes | None:
        self._requests += 1
        data: bytes | None = await self._client.get(self._key(key))
        return data

    async def put(self, key: str, data: bytes) -> None:
        """Write as Lithops does: the value, and its name in every directory set above it."""
        parts = self._key(key).split("/")
        self._requests += 1
        async with self._client.pipeline(transaction=False) as pipe:
            for i in range(1, len(parts) - 1):
                pipe.sadd("/".join(parts[:i]) + "/", parts[i] + "/")
            pipe.sadd("/".join(parts[:-1]) + "/", parts[-1])
            pipe.set(self._key(key), data)
            await pipe.execute()

    async def delete(self, keys: list[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [self._key(k) for k in keys[start : start + DELETE_BATCH]]
            self._requests += 1
            deleted += int(await self._client.eval(_DELETE_SCRIPT, len(batch), *batch, self._root))
        return deleted


def _endpoint(section: dict[str, Any]) -> str:
    host = section.get("host")
    if not host:
        raise ValueError("the 'redis' storage section needs a 'host'")
    port = int(section.get("port") or 6379)
    db = int(section.get("db") or 0)
    scheme = "rediss" if section.get("ssl") else "redis"
    return f"{scheme}://{host}:{port}/{db}"


async def _make_client(spec: tuple[str, RedisCredentials]) -> Any:
    redis_asyncio = import_client("redis.asyncio", "redis")

    endpoint, credentials = spec
    url = urlsplit(endpoint)
    return redis_asyncio.Redis(
        host=url.hostname or "localhost",
        port=url.port or 6379,
        db=int(url.path.strip("/") or 0),
        username=credentials.username,
        password=credentials.password,
        ssl=url.scheme == "rediss",
    )


async def _close_client(client: Any) -> None:
    await client.aclose()


_clients: SharedClients[Any] = SharedClients(_make_client, _close_client)


class RedisKind:
    """Lithops' ``redis`` storage backend."""

    name = KIND_NAME
    lithops_backends = frozenset({"redis"})
    needs_credentials = True

    def location(self, config: dict[str, Any]) -> StorageLocation:
        section = config.get("redis") or {}
        return StorageLocation(
            kind=KIND_NAME, bucket=LITHOPS_BUCKET, backend="redis", endpoint=_endpoint(section)
        )

    def credentials(self, config: dict[str, Any]) -> RedisCredentials:
        section = config.get("redis") or {}
        return RedisCredentials(section.get("username"), section.get("password"))

    @asynccontextmanager
    async def open(self, location: StorageLocation, credentials: Any) -> AsyncIterator[StatusSource]:
        if not location.endpoint:
            raise ValueError("a redis StorageLocation needs its endpoint (redis://host:port/db)")
        credentials = credentials or RedisCredentials()
        key = (location.endpoint, credentials.username, secret_digest(credentials.password))
        async with _clients.borrow(key, (location.endpoint, credentials)) as client:
            yield RedisStatusSource(client, location.bucket)


KIND = RedisKind()
