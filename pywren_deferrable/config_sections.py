"""Small pure helpers on config sections, shared by the Lithops and pywren config builders."""

from __future__ import annotations

import copy
from typing import Any


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return a new dict: ``override`` merged into ``base``, recursing into dicts.
    Neither input is modified (the seed mutated a shared default dict in place)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def fill_connection_keys(
    section: dict[str, Any],
    key_names: tuple[str, str],
    *,
    login: str | None,
    password: str | None,
    host: str | None,
) -> None:
    """Put the Connection's login, password and host into a storage section as its access
    key, secret key (named ``key_names``) and ``endpoint``, where the section has none:
    what a pasted config says wins."""
    access_name, secret_name = key_names
    for name, value in ((access_name, login), (secret_name, password), ("endpoint", host)):
        if value and name not in section:
            section[name] = value
