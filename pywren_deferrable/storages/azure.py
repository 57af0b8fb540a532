"""Lithops' ``azure_storage``: Azure Blob Storage through azure-storage-blob's ``aio`` client.

Azure's List Blobs had no "start after" until service version 2026-02-06 added
``startFrom`` (inclusive): the client is pinned to that version, the first that has it
(Azurite supports it too), so an idle poll is one request, as on S3. Keys are still
compared client-side, so a service that ignored ``startFrom`` would cost more, never
mislead. The account URL is Lithops' (``https://<account>.blob.core.windows.net``), or
the ``endpoint`` of the ``azure_storage`` section, or a connection string's ``BlobEndpoint``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

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

KIND_NAME = "azure"
API_VERSION = "2026-02-06"  # the first service version with List Blobs' startFrom
ACCOUNT_URL = "https://{}.blob.core.windows.net"
DELETE_BATCH = 256  # Blob Batch takes at most 256 sub-requests


@dataclass(frozen=True)
class AzureCredentials:
    """The storage account key (Lithops' ``storage_account_key``) or a connection string.
    Never serialized, never logged."""

    account_name: str
    account_key: str | None = None
    connection_string: str | None = None

    def __repr__(self) -> str:
        return (
            f"AzureCredentials(account_name={self.account_name!r}, "
            f"account_key={'***' if self.account_key else None}, "
            f"connection_string={'***' if self.connection_string else None})"
        )


def _connection_string_fields(value: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, content = part.partition("=")
        if sep:
            fields[name.strip()] = content.strip()
    return fields


def _is_not_found(err: BaseException) -> bool:
    return getattr(err, "status_code", None) == 404


class AzureAccessRefused(RuntimeError):
    """The storage account refused the Connection's credentials (403). Not transient: a
    retry with the same key cannot succeed. Names the account, never the key."""


@asynccontextmanager
async def _azure_errors(container: Any) -> AsyncIterator[None]:
    """Say what azure-core's errors mean to the trigger: a refused key (403) becomes an
    :class:`AzureAccessRefused` naming the account and the setting (azure-core only says
    "Server failed to authenticate the request"); an unreachable service, throttling (429)
    or a server error becomes a ``ConnectionError``, which the trigger retries up to its
    ``max_outage`` as it does S3's (azure-core's own retries, about a minute, come first)."""
    try:
        yield
    except Exception as err:
        account = getattr(container, "account_name", "?")
        status = getattr(err, "status_code", None)
        if type(err).__name__ in ("ServiceRequestError", "ServiceResponseError"):
            raise ConnectionError(
                f"Azure storage account {account!r} unreachable: {type(err).__name__}"
            ) from err
        if status == 429 or (isinstance(status, int) and status >= 500):
            raise ConnectionError(f"Azure storage account {account!r} answered {status}") from err
        if type(err).__name__ != "ClientAuthenticationError" and status != 403:
            raise
        code = getattr(err, "error_code", None) or "AuthenticationFailed"
        code = getattr(code, "value", code)  # azure-storage's StorageErrorCode enum
        raise AzureAccessRefused(
            f"Azure storage account {account!r} refused the Connection's "
            f"credentials (403 {code}): check azure_storage.storage_account_key (or connection_string)"
        ) from None


class AzureStatusSource:
    """A blob container through a shared ``azure.storage.blob.aio.ContainerClient``."""

    def __init__(self, container: Any) -> None:
        self._container = container
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    async def list_objects(self, prefix: str, start_after: str = "") -> AsyncIterator[list[ListedObject]]:
        kwargs: dict[str, Any] = {"name_starts_with": prefix, "results_per_page": LIST_PAGE_SIZE}
        if start_after:
            kwargs["start_from"] = start_after
        pages = self._container.list_blobs(**kwargs).by_page()
        while True:
            self._requests += 1
            try:
                async with _azure_errors(self._container):
                    page = await pages.__anext__()
                    blobs = [blob async for blob in page]
            except StopAsyncIteration:
                return
            yield [
                ListedObject(blob.name, blob.last_modified.timestamp())
                for blob in blobs
                if blob.name > start_after and blob.name.startswith(prefix)
            ]
            if not pages.continuation_token:
                return

    def list_keys(self, prefix: str, start_after: str = "") -> AsyncIterator[list[str]]:
        return keys_only(self.list_objects(prefix, start_after))

    async def get(self, key: str) -> bytes | None:
        self._requests += 1
        try:
            async with _azure_errors(self._container):
                downloader = await self._container.download_blob(key)
                data: bytes = await downloader.readall()
        except Exception as err:
            if _is_not_found(err):
                return None
            raise
        return data

    async def put(self, key: str, data: bytes) -> None:
        self._requests += 1
        async with _azure_errors(self._container):
            await self._container.upload_blob(key, data, overwrite=True)

    async def delete(self, keys: list[str]) -> int:
        """Blob Batch: one request per 256 keys; a key already gone is not an error."""
        deleted = 0
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            self._requests += 1
            async with _azure_errors(self._container):
                responses = await self._container.delete_blobs(*batch, raise_on_any_failure=False)
            async for response in responses:
                if response.status_code == 202:
                    deleted += 1
                elif response.status_code != 404:
                    raise RuntimeError(
                        f"deleting blobs failed with HTTP {response.status_code}: {response.reason}"
                    )
        return deleted


def _tls_context() -> ssl.SSLContext:
    """The client's TLS context, built once: azure-core builds a new one for every request
    when given a CA file (measured 20-120 ms of CPU each, more than the request), and
    aiohttp reads ``SSL_CERT_FILE`` (a private CA, as OpenSSL honours it) only at import."""
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None)


async def _make_client(spec: tuple[str, str, AzureCredentials]) -> Any:
    ContainerClient = import_client("azure.storage.blob.aio", "azure").ContainerClient
    import aiohttp  # azure-storage-blob[aio] brings it
    from azure.core.pipeline.transport import AioHttpTransport

    # azure-core logs every request and response at INFO: one trigger would write four
    # lines per poll into its task's log. Failures still raise (and are logged) as errors.
    http_log = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    if http_log.level == logging.NOTSET:
        http_log.setLevel(logging.WARNING)
    context = await asyncio.to_thread(_tls_context)  # reads the CA file: not on the loop
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), trust_env=True)
    options: dict[str, Any] = {
        "api_version": API_VERSION,
        "transport": AioHttpTransport(session=session, session_owner=True),
    }
    account_url, container, credentials = spec
    if credentials.connection_string:
        return ContainerClient.from_connection_string(credentials.connection_string, container, **options)
    credential = (
        {"account_name": credentials.account_name, "account_key": credentials.account_key}
        if credentials.account_key
        else None
    )
    return ContainerClient(account_url, container, credential=credential, **options)


async def _close_client(client: Any) -> None:
    await client.close()


_clients: SharedClients[Any] = SharedClients(_make_client, _close_client)


class AzureKind:
    """Lithops' ``azure_storage`` backend."""

    name = KIND_NAME
    lithops_backends = frozenset({"azure_storage"})
    needs_credentials = True

    def location(self, config: dict[str, Any]) -> StorageLocation:
        section = config.get("azure_storage") or {}
        bucket = section.get("storage_bucket")
        if not bucket:
            raise ValueError("the 'azure_storage' storage section needs a 'storage_bucket' (the container)")
        fields = _connection_string_fields(section.get("connection_string") or "")
        account = section.get("storage_account_name") or fields.get("AccountName")
        endpoint = section.get("endpoint") or fields.get("BlobEndpoint")
        if not endpoint:
            if not account:
                raise ValueError("the 'azure_storage' storage section needs a 'storage_account_name'")
            endpoint = ACCOUNT_URL.format(account)
        return StorageLocation(kind=KIND_NAME, bucket=bucket, backend="azure_storage", endpoint=endpoint)

    def credentials(self, config: dict[str, Any]) -> AzureCredentials:
        section = config.get("azure_storage") or {}
        connection_string = section.get("connection_string") or None
        account = section.get("storage_account_name") or _connection_string_fields(
            connection_string or ""
        ).get("AccountName", "")
        return AzureCredentials(account, section.get("storage_account_key") or None, connection_string)

    @asynccontextmanager
    async def open(self, location: StorageLocation, credentials: Any) -> AsyncIterator[StatusSource]:
        if not location.endpoint:
            raise ValueError("an azure StorageLocation needs its account URL (endpoint)")
        credentials = credentials or AzureCredentials("")
        key = (
            location.endpoint,
            location.bucket,
            credentials.account_name,
            secret_digest(credentials.account_key, credentials.connection_string),
        )
        async with _clients.borrow(key, (location.endpoint, location.bucket, credentials)) as client:
            yield AzureStatusSource(client)


KIND = AzureKind()
