"""Invoke a Lithops ``azure_functions`` function from the trigger: one message on its input queue.

Lithops' ``AzureFunctionAppBackend.invoke`` (trigger ``pub/sub``, its default) sends the
payload, as base64 of its JSON (``lithops.utils.dict_to_b64str``), to the function app's
input Storage Queue ``lithops-worker-<hash>-in-trigger`` of the storage account; the
Functions host's queue trigger runs the function for it, and retries it (up to
host.json's ``maxDequeueCount``) when it fails. The trigger sends the same message with
azure-storage-queue's ``aio`` client, authenticated with the account key read from the
Connection (never from the plan), so nothing blocks the event loop and Lithops is not
imported. The queue service is Lithops' ``https://<account>.queue.core.windows.net``;
``HTTPS_PROXY`` and ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` are honoured as in the
azure_storage poller.

Answers: throttling (429, 503 ``ServerBusy``), other server errors and connection trouble
are retried with backoff, then reported as :class:`DispatchUnavailable` (the dispatcher
tries again later); a refused key (403 ``AuthenticationFailed``), a missing queue (404:
the function app deleted) or another client error is a :class:`DispatchRefused`.
The ``https`` trigger (an anonymous POST to ``<app>.azurewebsites.net``) is not
dispatched by the trigger: such jobs keep Lithops' in-process queue (see
:func:`why_not`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import aiohttp

from pywren_deferrable.dispatch.credentials import secret_at, ssl_setting
from pywren_deferrable.dispatch.errors import DispatchRefused, DispatchUnavailable

MAX_ATTEMPTS = 4
FIRST_BACKOFF = 0.5
REQUEST_TIMEOUT = 30
IN_QUEUE = "in-trigger"  # Lithops' azure_functions config.IN_QUEUE
KEY_PATH = ["azure_functions", "storage_account_key"]  # Lithops copies azure_storage's key there


def why_not(config: dict[str, Any]) -> str | None:
    """Why the trigger cannot invoke this job's function (``config``: the executor's Lithops
    config), or ``None`` when it can."""
    trigger = (config.get("azure_functions") or {}).get("trigger", "pub/sub")
    if trigger != "pub/sub":
        return f"azure_functions with trigger {trigger!r}: the trigger sends queue messages ('pub/sub') only"
    return None


def invoke_target(backend: Any, name: str, payload: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Where the trigger sends the job's messages (no secret: ``auth`` names the config key
    holding the account key). ``backend``: Lithops' ``AzureFunctionAppBackend``."""
    function_name = backend._format_function_name(payload["runtime_name"])
    return {
        "account_url": backend.queue_service_url,
        "account_name": backend.storage_account_name,
        "queue": backend._format_queue_name(function_name, IN_QUEUE),
        "function": function_name,
        "auth": {"kind": "shared_key", "config_path": KEY_PATH},
    }


def message_content(payload: dict[str, Any]) -> str:
    """The queue message Lithops sends for ``payload`` (``lithops.utils.dict_to_b64str``)."""
    return base64.b64encode(json.dumps(payload, default=str).encode()).decode()


class AzureQueueInvoker:
    """Sends a plan's chunks to its function's input queue.

    :param target: the plan's invoke target (:func:`invoke_target`).
    :param config: the job's Lithops config with its secrets restored.
    The Azure client owns its aiohttp session (one that honours the proxy settings);
    :meth:`close` closes it.
    """

    def __init__(self, target: dict[str, Any], config: dict[str, Any]) -> None:
        from pywren_deferrable.storages.base import import_client

        QueueClient = import_client("azure.storage.queue.aio", "azure").QueueClient
        from azure.core.pipeline.transport import AioHttpTransport

        # azure-core logs every request at INFO: one line per message would flood the task log.
        http_log = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
        if http_log.level == logging.NOTSET:
            http_log.setLevel(logging.WARNING)
        self.target = target
        key = secret_at(config, target["auth"]["config_path"])
        self.url = f"{target['account_url'].rstrip('/')}/{target['queue']}"
        connector = aiohttp.TCPConnector(ssl=ssl_setting(False))
        transport = AioHttpTransport(
            session=aiohttp.ClientSession(connector=connector, trust_env=True), session_owner=True
        )
        self._client = QueueClient(
            target["account_url"],
            target["queue"],
            credential={"account_name": target["account_name"], "account_key": key},
            transport=transport,
            retry_total=0,  # retried here, with the dispatcher's own backoff
            connection_timeout=REQUEST_TIMEOUT,
            read_timeout=REQUEST_TIMEOUT,
        )

    def __repr__(self) -> str:  # never the key
        return f"AzureQueueInvoker({self.url!r})"

    async def close(self) -> None:
        await self._client.close()

    async def invoke(self, payload: dict[str, Any]) -> str:
        """Send one message; return its id (what Lithops takes for the activation id)."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        content = message_content(payload)
        delay = FIRST_BACKOFF
        last = ""
        for attempt in range(MAX_ATTEMPTS):
            try:
                message = await self._client.send_message(content)
            except ClientAuthenticationError as err:
                raise DispatchRefused(
                    f"{self.url}: {_status(err)} (the Connection's storage account key was refused)"
                ) from None
            except ResourceNotFoundError as err:
                raise DispatchRefused(
                    f"{self.url}: {_status(err)}, the function's input queue does not exist "
                    "(function app deleted since the job was submitted?)"
                ) from None
            except HttpResponseError as err:
                status = err.status_code or 0
                if status and status != 429 and status < 500:
                    raise DispatchRefused(f"{self.url}: {_status(err)}") from None
                last = _status(err)
            except (
                ServiceRequestError,
                ServiceResponseError,
                aiohttp.ClientError,
                asyncio.TimeoutError,
                OSError,
            ) as err:
                last = type(err).__name__
            else:
                return str(message.id)
            if attempt + 1 < MAX_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        raise DispatchUnavailable(f"{self.url}: {last} ({MAX_ATTEMPTS} attempts)")


def _status(err: Any) -> str:
    """The HTTP status and Azure error code of ``err`` (its message may quote the request)."""
    code = getattr(err, "error_code", None)
    code = getattr(code, "value", code)  # azure-storage's StorageErrorCode enum
    status = getattr(err, "status_code", None)
    return " ".join(str(part) for part in (status, code) if part) or type(err).__name__
