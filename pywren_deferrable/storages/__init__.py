"""Every storage the trigger polls, one module each behind :class:`~.base.StorageKind`.

``s3`` (IBM COS, MinIO, Ceph, AWS S3), ``localhost``, ``gcs`` (Lithops' ``gcp_storage``),
``azure`` (``azure_storage``) and ``redis``. Lithops 3.8 ships three more storage
backends that none of these reads: ``swift`` (OpenStack), ``aliyun_oss`` and
``oracle_oss`` (whose S3-compatible endpoints Lithops does not use) and ``infinispan``;
a job on them is refused at submit time with a clear error (see docs/connections.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pywren_deferrable.job import StorageLocation
from pywren_deferrable.storages import azure, gcs, localhost, redis, s3
from pywren_deferrable.storages.base import StatusSource, StorageKind

KINDS: dict[str, StorageKind] = {
    kind.name: kind for kind in (s3.KIND, localhost.KIND, gcs.KIND, azure.KIND, redis.KIND)
}


def storage_kind(name: str) -> StorageKind:
    """The storage kind of a :class:`~pywren_deferrable.job.StorageLocation`."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"storage kind {name!r} is not one of {sorted(KINDS)}") from None


def kind_for_backend(backend: str) -> StorageKind | None:
    """The kind that polls Lithops storage backend ``backend``, if any."""
    return next((kind for kind in KINDS.values() if backend in kind.lithops_backends), None)


@asynccontextmanager
async def open_status_source(location: StorageLocation, credentials: Any) -> AsyncIterator[StatusSource]:
    """Open the source for ``location`` with ``credentials`` (the kind's own, from
    :meth:`StorageKind.credentials`; ``None`` where it needs none)."""
    async with storage_kind(location.kind).open(location, credentials) as source:
        yield source
