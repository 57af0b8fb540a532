"""Where the trigger (and the result fetcher) read a job's objects from.

The sources live in :mod:`pywren_deferrable.storages`, one module per storage kind; this
module keeps the names the rest of the project (and other code) imports from here.
"""

from __future__ import annotations

from pywren_deferrable.storages import open_status_source
from pywren_deferrable.storages.base import LIST_PAGE_SIZE, ListedObject, StatusSource
from pywren_deferrable.storages.localhost import LocalStatusSource
from pywren_deferrable.storages.s3 import DELETE_BATCH, S3StatusSource

__all__ = [
    "DELETE_BATCH",
    "LIST_PAGE_SIZE",
    "ListedObject",
    "LocalStatusSource",
    "S3StatusSource",
    "StatusSource",
    "open_status_source",
]
