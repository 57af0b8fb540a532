"""aiobotocore clients for the benchmarks, configured like the provider's shared client,
with a per-client request counter hooked on botocore's ``before-send`` event (so every
HTTP request is counted, retries included, by operation name)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY


def client_config(max_pool_connections: int = 32) -> AioConfig:
    """The provider's client settings (hooks/s3_client_pool.py)."""
    return AioConfig(
        max_pool_connections=max_pool_connections,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"},
    )


def count_requests(client: Any, counts: Counter[str]) -> None:
    """Count every request ``client`` sends, by operation (``ListObjectsV2``, ``GetObject``)."""

    def before_send(event_name: str = "", **_: Any) -> None:
        counts[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-send.s3", before_send)


@asynccontextmanager
async def s3_client(
    endpoint: str,
    *,
    session: AioSession | None = None,
    counts: Counter[str] | None = None,
    max_pool_connections: int = 32,
) -> AsyncIterator[Any]:
    """An aiobotocore S3 client for ``endpoint`` with the embedded credentials."""
    context = (session or get_session()).create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=EMBEDDED_ACCESS_KEY,
        aws_secret_access_key=EMBEDDED_SECRET_KEY,
        config=client_config(max_pool_connections),
    )
    async with context as client:
        if counts is not None:
            count_requests(client, counts)
        yield client
