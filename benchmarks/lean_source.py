"""The read path proposed for ``triggers/status.py`` (``S3StatusSource``), measured here.

Profiling the pollers shows that a LIST's client CPU is almost all botocore: parsing
every field of every ``Contents`` entry (``LastModified`` through dateutil is ~60% of
it), emitting events, resolving endpoint rules, building the user agent. This source
keeps botocore only for what it is needed for, signing: it presigns each request with
the shared aiobotocore client (``generate_presigned_url`` sends nothing), sends it
through one plain aiohttp session, and parses only the fields the poller reads (``Key``,
``LastModified``, ``IsTruncated``, ``NextContinuationToken``) with ElementTree.

It is a benchmark of the proposal, not part of the package.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from pywren_deferrable.triggers.status import ListedObject

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
LIST_PAGE_SIZE = 1000


def _timestamp(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LeanS3Source:
    """A bucket read through presigned URLs (signed by ``client``) and ``http``."""

    def __init__(self, client: Any, http: aiohttp.ClientSession, bucket: str) -> None:
        self._client = client
        self._http = http
        self._bucket = bucket
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    async def _url(self, operation: str, params: dict[str, Any]) -> str:
        url: str = await self._client.generate_presigned_url(
            operation, Params={"Bucket": self._bucket, **params}, ExpiresIn=300
        )
        return url

    async def list_objects(self, prefix: str, start_after: str = "") -> AsyncIterator[list[ListedObject]]:
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": LIST_PAGE_SIZE}
        if start_after:
            params["StartAfter"] = start_after
        while True:
            self._requests += 1
            async with self._http.get(await self._url("list_objects_v2", params)) as response:
                response.raise_for_status()
                root = ET.fromstring(await response.read())
            yield [
                ListedObject(
                    item.findtext(f"{_NS}Key") or "", _timestamp(item.findtext(f"{_NS}LastModified"))
                )
                for item in root.iter(f"{_NS}Contents")
            ]
            token = root.findtext(f"{_NS}NextContinuationToken")
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return
            params.pop("StartAfter", None)
            params["ContinuationToken"] = token

    async def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        async for page in self.list_objects(prefix, start_after):
            yield [item.key for item in page]

    async def get(self, key: str) -> bytes | None:
        self._requests += 1
        async with self._http.get(await self._url("get_object", {"Key": key})) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            return await response.read()

    async def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError("the pollers and fetchers only read")

    async def delete(self, keys: list[str]) -> int:
        raise NotImplementedError("the pollers and fetchers only read")
