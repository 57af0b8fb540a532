"""What the backends' invokers share: reading a credential back from the job's config, and
the TLS verification their HTTP clients use. Pure helpers, no I/O beyond reading CA files."""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from typing import Any

from pywren_deferrable.dispatch.errors import DispatchRefused


def value_at(config: dict[str, Any], path: list[str]) -> str | None:
    """The non-empty string at ``path`` in ``config`` (``["openwhisk", "api_key"]``), if any."""
    value: Any = config
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def secret_at(config: dict[str, Any], path: list[str]) -> str:
    """The credential at ``path``; refused (naming the path, never a value) when missing."""
    value = value_at(config, path)
    if value is None:
        raise DispatchRefused(f"the Connection's config has no {'.'.join(path)} to invoke the function with")
    return value


@lru_cache(maxsize=4)
def _verified_context(cafile: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    return context


def ssl_setting(insecure: bool) -> ssl.SSLContext | bool:
    """What aiohttp verifies the endpoint's certificate with (``REQUESTS_CA_BUNDLE`` /
    ``SSL_CERT_FILE`` name extra CAs, as for Lithops' own clients; cached: loading CAs
    reads files)."""
    if insecure:
        return False
    return _verified_context(os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE"))
