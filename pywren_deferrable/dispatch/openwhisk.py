"""Invoke an OpenWhisk / IBM Cloud Functions action from the trigger, over aiohttp.

The same request Lithops' ``OpenWhiskClient.invoke`` sends (``POST
{endpoint}/api/v1/namespaces/{ns}/actions/{package}/{action}``, the payload as JSON,
non-blocking: ``202 {"activationId"}``), with HTTP Basic auth with the namespace's API key
(``openwhisk``) or an IAM bearer token for the IBM Cloud API key (``ibm_cf``, from the
shared async token manager of :mod:`pywren_deferrable.hooks.ibm_iam`). Never blocks the
event loop; never imports Lithops.

Unlike Lithops' client, TLS is verified (``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` name
extra CAs) unless the config says ``insecure: true``. Throttling (429), server errors and
connection trouble are retried with backoff, then reported as
:class:`DispatchUnavailable` (the dispatcher tries again later); a refused key (401), a
missing action (404) or another client error is a :class:`DispatchRefused`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp

from pywren_deferrable.dispatch.credentials import secret_at, ssl_setting
from pywren_deferrable.dispatch.errors import DispatchError, DispatchRefused, DispatchUnavailable
from pywren_deferrable.hooks.ibm_iam import IamAuthenticationError, IamError, shared_token_manager

__all__ = ["DispatchError", "DispatchRefused", "DispatchUnavailable", "OpenWhiskInvoker", "invoke_target"]

MAX_ATTEMPTS = 4
FIRST_BACKOFF = 0.5
REQUEST_TIMEOUT = 30.0


class OpenWhiskInvoker:
    """Invokes one action (a plan's ``target``) with the credential from ``config``.

    :param target: the plan's invoke target (endpoint, namespace, package, action, auth).
    :param config: the job's Lithops config with its secrets restored.
    :param session: the aiohttp session to send with (owned by the caller); by default one
        of its own, closed by :meth:`close`.
    """

    def __init__(
        self, target: dict[str, Any], config: dict[str, Any], session: aiohttp.ClientSession | None = None
    ) -> None:
        self.target = target
        self._own_session = session is None
        self._session = session
        auth = target["auth"]
        self._kind = auth["kind"]
        secret = secret_at(config, auth["config_path"])
        if self._kind == "basic":
            self._basic = "Basic " + base64.b64encode(secret.encode()).decode()
        else:
            self._manager = shared_token_manager(secret, auth.get("iam_endpoint"))
        self.url = "/".join(
            [
                target["endpoint"].replace("http:", "https:").rstrip("/"),
                "api/v1/namespaces",
                target["namespace"],
                "actions",
                target["package"],
                target["action"],
            ]
        )
        self._ssl = ssl_setting(bool(target.get("insecure")))

    def __repr__(self) -> str:  # never the credential
        return f"OpenWhiskInvoker({self.url!r})"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _authorization(self) -> tuple[str, int | None]:
        if self._kind == "basic":
            return self._basic, None
        try:
            token = await self._manager.token()
        except IamAuthenticationError as err:
            raise DispatchRefused(f"{self.url}: {err}") from None
        except IamError as err:  # IAM unreachable: the dispatch is retried later
            raise DispatchUnavailable(f"{self.url}: {err}") from None
        return f"Bearer {token.value}", token.generation

    async def invoke(self, payload: dict[str, Any]) -> str:
        """Invoke once (non-blocking); return the activation id."""
        body = json.dumps(payload, default=str)
        delay = FIRST_BACKOFF
        refreshed = False
        last = ""
        for attempt in range(MAX_ATTEMPTS):
            authorization, generation = await self._authorization()
            headers = {"content-type": "application/json", "Authorization": authorization}
            if self.target.get("user_agent"):
                headers["User-Agent"] = f"pywren-deferrable {self.target['user_agent']}"
            try:
                async with self.session.post(
                    self.url,
                    data=body,
                    headers=headers,
                    ssl=self._ssl,
                    timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                ) as response:
                    status = response.status
                    text = await response.text()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
                last = f"{type(err).__name__}: {err}"
            else:
                if status in (200, 202):
                    try:
                        activation = json.loads(text)["activationId"]
                    except (ValueError, KeyError, TypeError):
                        raise DispatchRefused(
                            f"{self.url} answered {status} without an activationId"
                        ) from None
                    return str(activation)
                if status == 401 and generation is not None and not refreshed:
                    self._manager.invalidate(generation)  # an expired IAM token: one retry with a new one
                    refreshed = True
                    continue
                if status == 401:
                    raise DispatchRefused(f"{self.url}: 401 unauthorized (the Connection's key was refused)")
                if status == 404:
                    raise DispatchRefused(
                        f"{self.url}: 404, the action does not exist (deleted since the job was submitted?)"
                    )
                if status != 429 and status < 500:
                    raise DispatchRefused(f"{self.url}: {status} {_error_text(text)}")
                last = f"{status} {_error_text(text)}"
            if attempt + 1 < MAX_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        raise DispatchUnavailable(f"{self.url}: {last} ({MAX_ATTEMPTS} attempts)")


def invoke_target(backend: Any, name: str, payload: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Worker side: where and how the trigger invokes the job's action, from Lithops'
    ``openwhisk`` / ``ibm_cf`` backend object (no secret: ``auth`` names the config key that
    holds the credential, which the trigger reads from the Connection)."""
    action = backend._format_function_name(payload["runtime_name"], payload["runtime_memory"])
    if name == "ibm_cf":
        backend._get_or_create_namespace()  # cached by Lithops after its first invocation
    client = backend.cf_client
    target: dict[str, Any] = {
        "endpoint": client.endpoint,
        "namespace": client.namespace,
        "package": backend.package,
        "action": action,
        "user_agent": config[name].get("user_agent"),
    }
    if name == "openwhisk":
        target["insecure"] = bool(backend.insecure)
        target["auth"] = {"kind": "basic", "config_path": ["openwhisk", "api_key"]}
    else:  # ibm_cf: an IAM bearer token for the API key
        iam_endpoint = config["ibm_cf"].get("iam_endpoint") or (config.get("ibm") or {}).get("iam_endpoint")
        target["auth"] = {
            "kind": "iam",
            "config_path": ["ibm_cf", "iam_api_key"],
            "iam_endpoint": iam_endpoint,
        }
    return target


def _error_text(text: str) -> str:
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error or text)[:200]
