"""Invoke an AWS Lambda function from the trigger, with aiobotocore.

The same invocation Lithops' ``AWSLambdaBackend.invoke`` makes (``POST
/2015-03-31/functions/{name}/invocations`` with ``X-Amz-Invocation-Type: Event``, the
payload as JSON, ``202`` and a request id), sent through aiobotocore's ``lambda`` client
rather than by hand: SigV4 signing, the standard AWS settings (``AWS_ENDPOINT_URL_LAMBDA``
or ``AWS_ENDPOINT_URL``, ``AWS_CA_BUNDLE``, profiles...) and connection handling come from
the SDK. Never blocks the event loop; never imports Lithops.

The credentials are the job's ``aws_lambda`` keys as restored from the Connection (the
plan names only where they are); a Connection without keys leaves them to the SDK's
default chain (environment, the triggerer's instance role...). Region and function name
come from the plan. Throttling (429 ``TooManyRequestsException``), server errors and
connection trouble are retried with backoff, then reported as :class:`DispatchUnavailable`
(the dispatcher tries again later); a refused key (403 ``UnrecognizedClientException`` /
``InvalidSignatureException``), a missing function (404 ``ResourceNotFoundException``) or
another client error is a :class:`DispatchRefused`. The SDK's own retries are off: these
are counted here, as for the other backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from pywren_deferrable.dispatch.credentials import value_at
from pywren_deferrable.dispatch.errors import DispatchRefused, DispatchUnavailable

MAX_ATTEMPTS = 4
FIRST_BACKOFF = 0.5
REQUEST_TIMEOUT = 30.0
CREDENTIAL_KEYS = ("access_key_id", "secret_access_key", "session_token")
# botocore's connection-level failures: the endpoint is down or the network is.
CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.HTTPClientError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)


class AwsLambdaInvoker:
    """Invokes one function (a plan's ``target``) with the credentials from ``config``.

    :param target: the plan's invoke target (region, function, where the credentials are).
    :param config: the job's Lithops config with its secrets restored.
    """

    def __init__(self, target: dict[str, Any], config: dict[str, Any]) -> None:
        self.target = target
        self.region = str(target["region"])
        self.function = str(target["function"])
        paths = target.get("credentials") or {}
        self._credentials = {
            key: value_at(config, list(paths[key])) for key in CREDENTIAL_KEYS if key in paths
        }
        if self._credentials.get("access_key_id") and not self._credentials.get("secret_access_key"):
            raise DispatchRefused(
                f"{self}: the Connection's config has an AWS access key id but no secret_access_key"
            )
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    def __repr__(self) -> str:  # never the credentials
        return f"AwsLambdaInvoker({self.function!r} in {self.region})"

    async def _get_client(self) -> Any:
        if self._client is None:
            config = AioConfig(
                user_agent_extra=self.target.get("user_agent") or None,
                connect_timeout=REQUEST_TIMEOUT,
                read_timeout=REQUEST_TIMEOUT,
                retries={"total_max_attempts": 1},  # counted here (MAX_ATTEMPTS)
            )
            self._client = await self._stack.enter_async_context(
                get_session().create_client(
                    "lambda",
                    region_name=self.region,
                    aws_access_key_id=self._credentials.get("access_key_id"),
                    aws_secret_access_key=self._credentials.get("secret_access_key"),
                    aws_session_token=self._credentials.get("session_token"),
                    config=config,
                )
            )
        return self._client

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    async def invoke(self, payload: dict[str, Any]) -> str:
        """Invoke once (``Event``: asynchronous); return Lambda's request id."""
        body = json.dumps(payload, default=str).encode()
        delay = FIRST_BACKOFF
        last = ""
        for attempt in range(MAX_ATTEMPTS):
            try:
                client = await self._get_client()
                response = await client.invoke(
                    FunctionName=self.function, InvocationType="Event", Payload=body
                )
            except botocore.exceptions.ClientError as err:
                status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                error = err.response.get("Error", {})
                code, message = str(error.get("Code", "")), str(error.get("Message", ""))[:200]
                if status != 429 and status < 500:
                    raise DispatchRefused(f"{self}: {status} {code}: {message}{_hint(status)}") from None
                last = f"{status} {code}: {message}"
            except (
                botocore.exceptions.NoCredentialsError,
                botocore.exceptions.PartialCredentialsError,
            ) as err:
                raise DispatchRefused(f"{self}: {err}") from None
            except CONNECTION_ERRORS as err:
                last = f"{type(err).__name__}: {err}"
            except botocore.exceptions.BotoCoreError as err:  # a request the SDK will not send
                raise DispatchRefused(f"{self}: {type(err).__name__}: {err}") from None
            else:
                status = int(response.get("StatusCode") or 0)
                request_id = response.get("ResponseMetadata", {}).get("RequestId")
                if status == 202 and request_id:
                    return str(request_id)
                raise DispatchRefused(f"{self} answered {status} without a request id to an Event invoke")
            if attempt + 1 < MAX_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        raise DispatchUnavailable(f"{self}: {last} ({MAX_ATTEMPTS} attempts)")


def _hint(status: int) -> str:
    if status in (401, 403):
        return " (the Connection's AWS key was refused)"
    if status == 404:
        return " (the function does not exist: deleted since the job was submitted?)"
    return ""


def invoke_target(backend: Any, name: str, payload: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Worker side: where the trigger invokes the job's function, from Lithops'
    ``AWSLambdaBackend`` (region, function name as Lithops formats it); no secret:
    ``credentials`` names the config keys that hold them, which the trigger reads back
    from the Connection."""
    section = config.get(name) or {}
    return {
        "region": backend.region,
        "function": backend._format_function_name(payload["runtime_name"], payload["runtime_memory"]),
        "user_agent": section.get("user_agent"),
        "credentials": {key: [name, key] for key in CREDENTIAL_KEYS if section.get(key)},
    }
