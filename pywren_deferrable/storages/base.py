"""The one small interface every storage kind offers the poll layer, and what they share.

A *storage kind* (S3-compatible, Lithops ``localhost``, Google Cloud Storage, Azure Blob,
Redis) is a module of this package exposing a :class:`StorageKind`: it turns a built
engine config into a secret-free :class:`~pywren_deferrable.job.StorageLocation` (on the
worker, at submit time), picks the secrets it needs from the config (in the triggerer,
from the Airflow Connection, never from trigger kwargs), and opens a
:class:`StatusSource` on an asynchronous client made for that service. The trigger, the
result fetcher and the cleaner only ever see a :class:`StatusSource`, so adding a storage
is adding a module here. Nothing here imports Lithops; client libraries are imported
when a source is opened, so that a storage's extra is needed only where it is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from pywren_deferrable.job import StorageLocation
from pywren_deferrable.loop_lock import LoopLock

LIST_PAGE_SIZE = 1000
T = TypeVar("T")


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


class StorageKind(Protocol):
    """What the project needs to know of one kind of storage.

    :ivar name: the :attr:`StorageLocation.kind <pywren_deferrable.job.StorageLocation>`
        it serves (``"s3"``, ``"gcs"``...).
    :ivar lithops_backends: the Lithops storage backends (``lithops.storage``) it polls.
    :ivar needs_credentials: whether :meth:`credentials` needs the Connection at all
        (``localhost`` storage does not, so it polls without one).
    """

    name: str
    lithops_backends: frozenset[str]
    needs_credentials: bool

    def location(self, config: dict[str, Any]) -> StorageLocation:
        """Where a job submitted with the built Lithops ``config`` keeps its objects.
        Pure: raises ``ValueError`` naming the missing config key."""
        ...

    def credentials(self, config: dict[str, Any]) -> Any:
        """The secrets the client needs, picked from ``config``; never serialized or logged."""
        ...

    def open(self, location: StorageLocation, credentials: Any) -> AbstractAsyncContextManager[StatusSource]:
        """A source on a client shared by every trigger of this event loop with the same
        endpoint and credentials."""
        ...


async def keys_only(pages: AsyncIterator[list[ListedObject]]) -> AsyncIterator[list[str]]:
    """``list_keys`` from ``list_objects``, for every source."""
    async for page in pages:
        yield [item.key for item in page]


def import_client(module: str, extra: str) -> Any:
    """Import a storage's client library, or say which extra installs it (the triggerer
    needs it as much as the workers do)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"polling this storage needs {module!r}: pip install 'pywren-deferrable[{extra}]' "
            f"on the triggerer and the workers ({err})"
        ) from err


def secret_digest(*secrets: str | None) -> str:
    """A digest standing for secrets in a client-sharing key, so the key holds none."""
    return hashlib.sha256("\x1f".join(s or "" for s in secrets).encode()).hexdigest()


@dataclass
class _Entry(Generic[T]):
    client: T
    users: int


class SharedClients(Generic[T]):
    """One client per (event loop, key), shared and reference-counted.

    A triggerer runs every trigger on one event loop: a client (connection pool, TLS
    sessions, tokens) per trigger costs CPU on each request and sockets on the server, so
    triggers borrow a shared one and the last to leave closes it. The event loop is part
    of the key because aiohttp and redis-py clients are bound to the loop that made them
    (the worker fetches results in a short-lived loop of its own).

    :param make: builds a client for a key (may await).
    :param close: closes it.
    """

    def __init__(self, make: Callable[[Any], Awaitable[T]], close: Callable[[T], Awaitable[None]]) -> None:
        self._make = make
        self._close = close
        self._entries: dict[tuple[int, Hashable], _Entry[T]] = {}
        self._lock = LoopLock()

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def borrow(self, key: Hashable, spec: Any) -> AsyncIterator[T]:
        """The client for ``key`` (built from ``spec`` when none is open yet)."""
        full_key = (id(asyncio.get_running_loop()), key)
        async with self._lock.get():
            entry = self._entries.get(full_key)
            if entry is None:
                entry = self._entries[full_key] = _Entry(await self._make(spec), 0)
            entry.users += 1
        try:
            yield entry.client
        finally:
            async with self._lock.get():
                entry.users -= 1
                if entry.users == 0:
                    self._entries.pop(full_key, None)
                    await self._close(entry.client)
