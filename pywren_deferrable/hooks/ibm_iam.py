"""IBM Cloud IAM API-key authentication for IBM COS, asynchronous (aiohttp, never blocking).

Lithops' ``ibm_cos`` storage may be configured with an IAM API key (``api_key``, or
``iam_api_key`` also taken from the top-level ``ibm`` section) instead of HMAC keys. Lithops
exchanges it for a bearer token at ``https://iam.cloud.ibm.com/identity/token`` (ibm_botocore's
``DefaultTokenManager`` / ibm-cloud-sdk-core's ``IAMAuthenticator``); so do we, here, with
aiohttp, for the triggerer's (and the result fetcher's) aiobotocore client:

* :class:`IamTokenManager` exchanges the key for a token and caches it until less than 20 %
  of its lifetime is left (as ibm-cloud-sdk-core does: a 60 min token is renewed 12 min
  before it expires). One refresh at a time per event loop, and every waiter shares its
  outcome, so N triggers on the same key cost one IAM request. Transient IAM failures
  (connection errors, timeouts, 429, 5xx) are retried with backoff; if they outlast the
  retries while the current token is still valid, that token is kept. A key IAM rejects
  (400/401/403) raises :class:`IamAuthenticationError`, which names no key.
* :class:`IamBearerAuth` hooks into an aiobotocore S3 client created with
  ``signature_version=UNSIGNED``: ``before-send`` adds ``Authorization: Bearer <token>``
  (after botocore has logged the request, so the token never reaches botocore's debug
  log), and ``needs-retry`` retries a request that got a 401/403 once, with a new token.

Keys and tokens never appear in logs, reprs or exception messages.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from pywren_deferrable.loop_lock import LoopLock

logger = logging.getLogger(__name__)

DEFAULT_IAM_ENDPOINT = "https://iam.cloud.ibm.com/identity/token"
IAM_TOKEN_PATH = "/identity/token"
APIKEY_GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"
# Renew when less than this fraction of the token's lifetime is left (ibm-cloud-sdk-core: 20 %).
REFRESH_FRACTION = 0.2
# A token this close to its expiry (seconds, or fraction of its lifetime if smaller) is not
# used any more, even when IAM cannot give a new one.
EXPIRY_SAFETY = 30.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF = 0.5
# Operations for which IBM COS needs the service instance (ibm_botocore adds the header
# for exactly these two; object operations and ListObjects are addressed by bucket).
SERVICE_INSTANCE_OPERATIONS = frozenset({"ListBuckets", "CreateBucket"})
SERVICE_INSTANCE_HEADER = "ibm-service-instance-id"
_CONTEXT_GENERATION = "pywren_iam_token_generation"
_CONTEXT_RETRIED = "pywren_iam_auth_retried"


class IamError(Exception):
    """IBM Cloud IAM did not give a token. Messages never contain the key or a token."""


class IamAuthenticationError(IamError):
    """IAM rejected the API key (HTTP 400/401/403): not transient."""


class IamUnavailableError(IamError, ConnectionError):
    """IAM could not be reached or failed transiently, on every attempt.

    A ``ConnectionError`` (an ``OSError``), so that the trigger treats it as a storage
    outage and keeps retrying within its ``max_outage``.
    """


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (where plain http cannot leak anything)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_iam_endpoint(endpoint: str | None) -> str:
    """The token URL for ``endpoint``: the default when empty; a bare base URL
    (``https://private.iam.cloud.ibm.com``) gets IAM's ``/identity/token`` path.
    Plain http is refused unless the endpoint is on this machine (tests)."""
    if not endpoint:
        return DEFAULT_IAM_ENDPOINT
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"the IAM endpoint must be an http(s) URL, got {endpoint!r}")
    if parts.scheme == "http" and not is_loopback_url(endpoint):
        raise ValueError(f"refusing to send an IAM API key over plain http to {endpoint!r}; use https")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + IAM_TOKEN_PATH
    return endpoint


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def iam_ssl() -> ssl.SSLContext | bool:
    """How to verify IAM's TLS certificate: with ``REQUESTS_CA_BUNDLE`` when set (the CA
    bundle Lithops' own IAM token managers, which use requests, verify with), else with the
    system's CAs. The context is loaded once per bundle path."""
    cafile = os.environ.get("REQUESTS_CA_BUNDLE")
    return _ssl_context(cafile) if cafile else True


class IamToken:
    """One bearer token. ``generation`` counts the tokens a manager has obtained."""

    __slots__ = ("expires_at", "generation", "lifetime", "refresh_at", "value")

    def __init__(self, value: str, generation: int, expires_at: float, lifetime: float) -> None:
        self.value = value
        self.generation = generation
        self.expires_at = expires_at
        self.lifetime = lifetime
        self.refresh_at = expires_at - REFRESH_FRACTION * lifetime

    def usable(self, now: float) -> bool:
        """Still good enough to send, though maybe due for a refresh."""
        return now < self.expires_at - min(EXPIRY_SAFETY, 0.1 * self.lifetime)

    def __repr__(self) -> str:
        return f"IamToken(generation={self.generation}, value=***)"


class IamTokenManager:
    """Exchanges one IAM API key for bearer tokens and caches them.

    :param api_key: the IBM Cloud IAM API key.
    :param endpoint: the IAM token URL (default ``https://iam.cloud.ibm.com/identity/token``).
    :param clock: monotonic seconds; injectable for tests.
    :param timeout: seconds per IAM request.
    :param max_attempts: IAM requests per refresh before giving up on transient failures.
    :param backoff: first pause between attempts (doubles each time).

    Usable from several event loops (the lock is per loop, the cached token is shared).
    """

    def __init__(
        self,
        api_key: str,
        endpoint: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        if not api_key or not isinstance(api_key, str):
            raise ValueError("an IBM Cloud IAM API key is required")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self._api_key = api_key
        self.endpoint = normalize_iam_endpoint(endpoint)
        self.clock = clock
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._token: IamToken | None = None
        self._generation = 0
        self._refreshes = 0  # completed refresh attempts (success or failure)
        self._last_error: IamError | None = None
        self._lock = LoopLock()
        self.requests = 0  # HTTP requests sent to IAM (for tests and benchmarks)

    def __repr__(self) -> str:
        state = f"generation={self._token.generation}" if self._token else "no token"
        return f"IamTokenManager(endpoint={self.endpoint!r}, {state})"

    def _fresh(self, token: IamToken | None) -> bool:
        return token is not None and self.clock() < token.refresh_at

    async def get_token(self) -> str:
        """A valid bearer token (without the ``Bearer`` prefix)."""
        return (await self.token()).value

    async def token(self) -> IamToken:
        """The cached token, refreshed first when less than 20 % of its lifetime is left."""
        current = self._token
        if self._fresh(current):
            assert current is not None
            return current
        seen = self._refreshes
        async with self._lock.get():
            current = self._token
            if self._fresh(current):
                assert current is not None
                return current
            if self._refreshes != seen and self._last_error is not None:
                # Someone refreshed while we waited, and failed: share that outcome
                # instead of queueing one more round of retries per waiting trigger.
                if current is not None and current.usable(self.clock()):
                    return current
                raise type(self._last_error)(*self._last_error.args)
            try:
                new = await self._request_token()
            except IamError as err:
                self._last_error = err
                self._refreshes += 1
                if isinstance(err, IamUnavailableError) and current is not None:
                    now = self.clock()
                    if current.usable(now):
                        logger.warning(
                            "IBM Cloud IAM token refresh failed (%s); the current token stays in use "
                            "for up to %.0f s",
                            err,
                            current.expires_at - now,
                        )
                        return current
                raise
            self._token = new
            self._last_error = None
            self._refreshes += 1
            return new

    def invalidate(self, generation: int) -> bool:
        """Drop the cached token if it is still ``generation`` (storage rejected it).
        Return whether it was dropped; a newer token is kept, so N requests rejected
        with the same token cause one refresh."""
        current = self._token
        if current is not None and current.generation == generation:
            self._token = None
            logger.info("IBM COS rejected IAM token generation %d; a new one will be requested", generation)
            return True
        return False

    async def _request_token(self) -> IamToken:
        delay = self._backoff
        form = {"grant_type": APIKEY_GRANT_TYPE, "apikey": self._api_key}
        headers = {"Accept": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        for attempt in range(1, self._max_attempts + 1):
            self.requests += 1
            started = self.clock()
            started_wall = time.time()
            try:
                # A session per refresh: refreshes are rare (hourly), and no session then
                # outlives the event loop that made it.
                async with (
                    aiohttp.ClientSession(timeout=timeout, trust_env=True) as session,
                    session.post(self.endpoint, data=form, headers=headers, ssl=iam_ssl()) as response,
                ):
                    status = response.status
                    body = await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                problem = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            else:
                if status == 200:
                    return self._parse(body, started, started_wall)
                if status in (400, 401, 403):
                    raise IamAuthenticationError(
                        f"IBM Cloud IAM at {self.endpoint} rejected the API key "
                        f"(HTTP {status}{self._describe_error(body)}); check the api_key / "
                        "iam_api_key of the ibm_cos (or ibm) section of the Connection"
                    )
                if status != 429 and status < 500:
                    raise IamError(
                        f"unexpected HTTP {status} from IBM Cloud IAM at {self.endpoint}"
                        f"{self._describe_error(body)}"
                    )
                problem = f"HTTP {status}{self._describe_error(body)}"
            if attempt == self._max_attempts:
                raise IamUnavailableError(
                    f"IBM Cloud IAM at {self.endpoint} gave no token after {attempt} attempts ({problem})"
                )
            logger.warning(
                "IBM Cloud IAM token request failed (%s), attempt %d/%d; retrying in %.1f s",
                problem,
                attempt,
                self._max_attempts,
                delay,
            )
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _describe_error(self, body: bytes) -> str:
        """IAM's ``errorCode: errorMessage``, key redacted, or nothing."""
        try:
            data = json.loads(body)
        except ValueError:
            return ""
        if not isinstance(data, dict):
            return ""
        code, message = data.get("errorCode"), data.get("errorMessage")
        text = ": ".join(str(part) for part in (code, message) if part)
        text = text.replace(self._api_key, "***")[:200]
        return f" {text}" if text else ""

    def _parse(self, body: bytes, started: float, started_wall: float) -> IamToken:
        try:
            data = json.loads(body)
        except ValueError:
            raise IamError(f"IBM Cloud IAM at {self.endpoint} answered with no JSON") from None
        if not isinstance(data, dict):
            raise IamError(f"IBM Cloud IAM at {self.endpoint} answered with no JSON object")
        value = data.get("access_token")
        if not isinstance(value, str) or not value:
            raise IamError(f"IBM Cloud IAM at {self.endpoint} answered without an access_token")
        lifetime: float | None = None
        expires_in = data.get("expires_in")
        expiration = data.get("expiration")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            lifetime = float(expires_in)
        elif isinstance(expiration, int | float) and not isinstance(expiration, bool):
            lifetime = float(expiration) - started_wall
        if lifetime is None or lifetime <= 0:
            raise IamError(f"IBM Cloud IAM at {self.endpoint} answered without a valid expiry")
        self._generation += 1
        logger.debug(
            "obtained IBM Cloud IAM token generation %d, valid for %.0f s", self._generation, lifetime
        )
        # Timed from before the request: the token cannot outlive that.
        return IamToken(value, self._generation, started + lifetime, lifetime)


_managers: dict[tuple[str, str], IamTokenManager] = {}
_managers_lock = threading.Lock()


def shared_token_manager(api_key: str, endpoint: str | None = None) -> IamTokenManager:
    """The process-wide manager for this key and IAM endpoint: every trigger (and every
    client) using the same key shares one token. Keyed by the key's hash, not the key."""
    url = normalize_iam_endpoint(endpoint)
    key = (url, hashlib.sha256(api_key.encode()).hexdigest())
    with _managers_lock:
        manager = _managers.get(key)
        if manager is None:
            manager = _managers[key] = IamTokenManager(api_key, url)
        return manager


class IamBearerAuth:
    """Authenticates an (unsigned) aiobotocore S3 client's requests with IAM bearer tokens."""

    def __init__(self, manager: IamTokenManager, service_instance_id: str | None = None) -> None:
        self._manager = manager
        self._service_instance_id = service_instance_id
        self.auth_retries = 0  # requests retried after a 401/403 (for tests)

    def __repr__(self) -> str:  # botocore logs handlers at debug level
        return f"IamBearerAuth({self._manager!r})"

    def register(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-send.s3", self.add_auth, unique_id="pywren-iam-bearer")
        events.register("needs-retry.s3", self.retry_on_auth_error, unique_id="pywren-iam-retry")

    async def add_auth(self, request: Any, event_name: str = "", **kwargs: Any) -> None:
        """``before-send``: the last step before the wire, awaited by aiobotocore; it runs
        for every attempt, so a retried request gets the current token. Returns ``None``
        (a value would be taken as the HTTP response)."""
        token = await self._manager.token()
        headers = request.headers
        if "Authorization" in headers:
            del headers["Authorization"]
        headers["Authorization"] = f"Bearer {token.value}"
        if self._service_instance_id and event_name.rsplit(".", 1)[-1] in SERVICE_INSTANCE_OPERATIONS:
            headers[SERVICE_INSTANCE_HEADER] = self._service_instance_id
        context = getattr(request, "context", None)
        if context is not None:
            context[_CONTEXT_GENERATION] = token.generation

    def retry_on_auth_error(
        self, response: Any = None, request_dict: Any = None, **kwargs: Any
    ) -> float | None:
        """``needs-retry``: on a 401/403, drop the token that was used and retry once (no
        pause); the retry's ``before-send`` gets a new token. A second 401/403 is returned
        to the caller (a missing permission is no token problem)."""
        if response is None or request_dict is None:
            return None
        status = getattr(response[0], "status_code", None)
        context = request_dict.get("context")
        if status not in (401, 403) or context is None or context.get(_CONTEXT_RETRIED):
            return None
        generation = context.get(_CONTEXT_GENERATION)
        if generation is None:
            return None
        context[_CONTEXT_RETRIED] = True
        self._manager.invalidate(generation)
        self.auth_retries += 1
        return 0


def lithops_token_fields(api_key: str, endpoint: str | None = None) -> dict[str, Any]:
    """A new IAM token for Lithops' ``ibm_cos`` section, as Lithops caches its own:
    ``{"token": ..., "token_expiry_time": <epoch seconds>}``.

    Lithops' token managers always ask the public IAM endpoint (its ``ibm_cos`` config has
    no IAM endpoint setting) and reuse a ``token`` from the config while it has more than
    20 minutes left. Handing Lithops a token obtained here, from the IAM endpoint the
    Connection names, makes Lithops (on the submitting side and in its workers) and the
    triggerer use one IAM endpoint, and a rejected key fail at submit with a clear
    :class:`IamAuthenticationError`. A fresh manager: the token gets its full lifetime.
    """
    from pywren_deferrable.sync_bridge import run_sync

    manager = IamTokenManager(api_key, endpoint)
    token = run_sync(manager.token)
    remaining = token.expires_at - manager.clock()
    return {"token": token.value, "token_expiry_time": int(time.time() + remaining)}


def give_lithops_an_iam_token(config: dict[str, Any]) -> None:
    """Put an IAM token into the ``ibm_cos`` section of a Lithops ``config`` whose IBM COS
    storage authenticates with an API key (see :func:`lithops_token_fields`); no-op for
    HMAC keys, other storages, pywren configs, or a config that already carries a token."""
    from pywren_deferrable.config import s3_credentials

    lithops_section = config.get("lithops")
    if not isinstance(lithops_section, dict) or lithops_section.get("storage") != "ibm_cos":
        return
    section = config.setdefault("ibm_cos", {})
    if section.get("token"):
        return
    credentials = s3_credentials(config)
    if credentials.iam_api_key:
        section.update(lithops_token_fields(credentials.iam_api_key, credentials.iam_endpoint))
