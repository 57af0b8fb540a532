"""The S3 read path of the poll loop: signed requests on one aiohttp session, lean parsing.

A poll is a ``ListObjectsV2`` and a few ``GetObject``. Through aiobotocore each costs
~5 ms of CPU, nearly all of it botocore's generic machinery: endpoint rules, event
hooks, user agent, and parsing every field of every ``Contents`` entry (benchmarks/,
rows 3 and "scale"). At 5,000 triggers polling every 10 s that is 500 polls a second, so
a poll must cost well under 2 ms. This reader keeps botocore for what it is needed for,
signing (its own ``S3SigV4Auth``, the signer its clients use), sends the request
through one aiohttp session per event loop, and reads only the fields the poller uses
(``Key``, ``LastModified``, ``IsTruncated``, ``NextContinuationToken``) with the
standard library's expat-backed ElementTree.

Errors read like the client's: an S3 error document becomes a botocore ``ClientError``
with its code and HTTP status (so throttling and 5xx stay transient for the trigger),
connection trouble is aiohttp's. Writes and deletes, rare, stay on aiobotocore.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path
from yarl import URL

from pywren_deferrable.storages.base import LIST_PAGE_SIZE, ListedObject, SharedClients

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_CONTENTS = f"{_NS}Contents"
_KEY = f"{_NS}Key"
_LAST_MODIFIED = f"{_NS}LastModified"
# The trigger retries over longer outages itself; these bound one request.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
# Connections per event loop to all endpoints (the poll scheduler bounds polls in flight).
MAX_CONNECTIONS = 64


def _quote(value: str) -> str:
    """Percent-encode as SigV4's canonical form does (RFC 3986 unreserved kept)."""
    return quote(value, safe="-_.~")


def parse_timestamp(text: str | None) -> float:
    """An S3 ``LastModified`` (ISO 8601, ``Z``) as epoch seconds. (Python 3.10's
    ``fromisoformat``, which the pywren engine's venv runs, does not read ``Z``.)"""
    if not text:
        return 0.0
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_listing(body: bytes) -> tuple[list[ListedObject], str | None]:
    """The objects of a ``ListObjectsV2`` page and its continuation token (``None``: last page)."""
    root = ET.fromstring(body)
    objects = [
        ListedObject(item.findtext(_KEY) or "", parse_timestamp(item.findtext(_LAST_MODIFIED)))
        for item in root.iter(_CONTENTS)
    ]
    token = root.findtext(f"{_NS}NextContinuationToken")
    truncated = root.findtext(f"{_NS}IsTruncated") == "true"
    return objects, (token if truncated and token else None)


def _client_error(status: int, body: bytes, operation: str) -> ClientError:
    """An S3 error response as botocore would raise it."""
    code, message = str(status), ""
    try:
        root = ET.fromstring(body)
        code = root.findtext("Code") or code
        message = root.findtext("Message") or ""
    except ET.ParseError:
        pass
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@lru_cache(maxsize=8)
def _verify_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(get_cert_path(ca_bundle or True))
    return context


async def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """What the reader verifies the endpoint's certificate with: the bundle the aiobotocore
    client verifies with (``AWS_CA_BUNDLE``..., else botocore's default bundle), so that
    both paths trust the same CAs. Built off the loop once per bundle (it reads files)."""
    return await asyncio.to_thread(_verify_context, ca_bundle)


async def _new_session(_spec: Any) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
        timeout=aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT),
        # Responses are read whole; no cookies, no automatic decompression surprises.
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def _close_session(session: aiohttp.ClientSession) -> None:
    await session.close()


_SESSIONS: SharedClients[aiohttp.ClientSession] = SharedClients(_new_session, _close_session)


@asynccontextmanager
async def shared_http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """The event loop's aiohttp session for S3 reads (shared by every trigger)."""
    async with _SESSIONS.borrow("s3-lean", None) as session:
        yield session


class LeanS3Reader:
    """Signed GET requests (list, get) to one bucket, path-style, as the shared client sends.

    :param http: the event loop's shared session.
    :param endpoint: the endpoint URL (the aiobotocore client's, resolved).
    :param region: the signing region.
    :param bucket: the bucket.
    :param credentials: HMAC keys (and session token), or ``None`` to send unsigned requests.
    :param tls: how to verify an ``https`` endpoint (:func:`tls_context`).
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        endpoint: str,
        region: str,
        bucket: str,
        credentials: Credentials | None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._http = http
        self._tls: ssl.SSLContext | bool = tls if tls is not None else True
        self._base = f"{endpoint.rstrip('/')}/{quote(bucket, safe='')}"
        self._signer = S3SigV4Auth(credentials, "s3", region) if credentials is not None else None

    def _signed(self, path: str, query: str) -> tuple[URL, dict[str, str]]:
        url = f"{self._base}{path}" + (f"?{query}" if query else "")
        headers: dict[str, str] = {}
        if self._signer is not None:
            request = AWSRequest(method="GET", url=url, headers={})
            self._signer.add_auth(request)
            headers = {k: v for k, v in request.headers.items()}
        # The URL is already in its canonical (signed) encoding: aiohttp must not re-encode it.
        return URL(url, encoded=True), headers

    async def list_page(
        self, prefix: str, start_after: str, token: str | None
    ) -> tuple[list[ListedObject], str | None]:
        """One ``ListObjectsV2`` page: its objects and the token of the next (``None``: last)."""
        params = {"list-type": "2", "max-keys": str(LIST_PAGE_SIZE), "prefix": prefix}
        if token is not None:
            params["continuation-token"] = token
        elif start_after:
            params["start-after"] = start_after
        query = "&".join(f"{k}={_quote(v)}" for k, v in sorted(params.items()))
        url, headers = self._signed("", query)
        async with self._http.get(url, headers=headers, ssl=self._tls) as response:
            body = await response.read()
            if response.status != 200:
                raise _client_error(response.status, body, "ListObjectsV2")
        return parse_listing(body)

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` when it does not exist."""
        url, headers = self._signed("/" + quote(key, safe="/~"), "")
        async with self._http.get(url, headers=headers, ssl=self._tls) as response:
            body = await response.read()
            if response.status == 404:
                return None
            if response.status != 200:
                raise _client_error(response.status, body, "GetObject")
        return body
