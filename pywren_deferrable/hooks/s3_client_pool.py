"""One aiobotocore client per (event loop, endpoint, credentials), shared by every user.

A triggerer runs many triggers on one event loop. A client per trigger costs a TLS
pool and ~4x the CPU per request (see DESIGN.md, baselines); a client per request costs
~14x. So triggers borrow a shared client, reference-counted, and the last one to
leave closes it. The key includes the event loop because aiohttp sessions are bound to
the loop that created them (the worker fetches results in its own short-lived loop).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import UNSIGNED
from botocore.utils import parse_timestamp

from pywren_deferrable.config import S3Credentials
from pywren_deferrable.hooks.ibm_iam import IamBearerAuth, is_loopback_url, shared_token_manager
from pywren_deferrable.loop_lock import LoopLock

DEFAULT_MAX_POOL_CONNECTIONS = 32


@dataclass
class _Entry:
    client: Any
    context: Any
    users: int


_entries: dict[tuple[Any, ...], _Entry] = {}
_lock = LoopLock()


def _pool_key(endpoint: str | None, region: str | None, credentials: S3Credentials) -> tuple[Any, ...]:
    # The secret is hashed so that the key (which may show up in a debugger) holds no secret.
    secret_digest = hashlib.sha256((credentials.secret_access_key or "").encode()).hexdigest()
    token_digest = hashlib.sha256((credentials.session_token or "").encode()).hexdigest()
    # IAM (bearer token) clients are a different kind of client than HMAC ones.
    iam_digest = (
        hashlib.sha256(credentials.iam_api_key.encode()).hexdigest() if credentials.iam_api_key else None
    )
    return (
        id(asyncio.get_running_loop()),
        endpoint,
        region,
        credentials.access_key_id,
        secret_digest,
        token_digest,
        iam_digest,
        credentials.iam_endpoint,
        credentials.service_instance_id,
    )


_SESSION: Any = None


def fast_timestamp(value: str) -> Any:
    """Parse a response timestamp with ``datetime.fromisoformat``, falling back to botocore's.

    botocore parses every ``LastModified`` of a listing with dateutil: measured as 63% of
    the client CPU of an idle poll (benchmarks/, row 3). ISO 8601, which S3 listings use,
    needs none of dateutil's generality.
    """
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        return parse_timestamp(value)


def _session() -> Any:
    """One aiobotocore session per process: creating one loads botocore's data files,
    which blocks the event loop for ~0.1 s each time."""
    global _SESSION
    if _SESSION is None:
        _SESSION = get_session()
        _SESSION.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=fast_timestamp)
    return _SESSION


def ca_bundle() -> str | None:
    """The CA bundle the clients verify TLS with, as botocore resolves it for a client made
    without ``verify``: ``AWS_CA_BUNDLE`` or the profile's ``ca_bundle`` (``None``: botocore's
    default bundle). Read each time: the environment may change between clients."""
    value = _session().get_config_variable("ca_bundle")
    return str(value) if value else None


def active_clients() -> int:
    """How many shared clients are open (for tests and benchmarks)."""
    return len(_entries)


def _iam_auth(endpoint: str | None, credentials: S3Credentials) -> IamBearerAuth:
    """What adds IAM bearer tokens to the requests of an unsigned client."""
    assert credentials.iam_api_key
    if endpoint and endpoint.startswith("http://") and not is_loopback_url(endpoint):
        raise ValueError(f"refusing to send IAM bearer tokens over plain http to {endpoint!r}; use https")
    manager = shared_token_manager(credentials.iam_api_key, credentials.iam_endpoint)
    return IamBearerAuth(manager, credentials.service_instance_id)


@asynccontextmanager
async def shared_s3_client(
    *,
    endpoint: str | None,
    region: str | None,
    credentials: S3Credentials,
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
) -> AsyncIterator[Any]:
    """Borrow the shared aiobotocore S3 client for this endpoint and these credentials."""
    key = _pool_key(endpoint, region, credentials)
    async with _lock.get():
        entry = _entries.get(key)
        if entry is None:
            config = AioConfig(
                max_pool_connections=max_pool_connections,
                # Our own loop retries with backoff over longer outages; botocore's
                # retries cover the short blips.
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=30,
                # IBM COS, MinIO, Ceph and moto all accept path-style addressing; virtual
                # hosts need DNS for every bucket, which a 127.0.0.1 endpoint has not.
                s3={"addressing_style": "path"},
            )
            auth = _iam_auth(endpoint, credentials) if credentials.iam_api_key else None
            if auth is not None:
                # Unsigned: the IAM bearer token is the only authentication.
                config = config.merge(AioConfig(signature_version=UNSIGNED))
            context = _session().create_client(
                "s3",
                endpoint_url=endpoint,
                region_name=region or "us-east-1",
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=credentials.session_token,
                config=config,
            )
            client = await context.__aenter__()
            if auth is not None:
                auth.register(client)
            entry = _entries[key] = _Entry(client=client, context=context, users=0)
        entry.users += 1
    try:
        yield entry.client
    finally:
        async with _lock.get():
            entry.users -= 1
            if entry.users == 0:
                _entries.pop(key, None)
                await entry.context.__aexit__(None, None, None)
