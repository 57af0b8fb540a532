"""A private Lithops cache directory for one test."""

from __future__ import annotations

from pathlib import Path

import pytest


def private_lithops_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Lithops caches runtime metadata (on disk under ~/.lithops/cache, and in memory for
    the process) by runtime name, which is the same in every test: a test must not find
    another test's runtime there, nor write where other tests read."""
    import lithops.constants
    import lithops.storage.storage as storage

    cache = tmp_path / "lithops-cache"
    cache.mkdir(exist_ok=True)
    for module in (lithops.constants, storage):
        monkeypatch.setattr(module, "CACHE_DIR", str(cache))
    monkeypatch.setattr(storage, "RUNTIME_META_CACHE", {})
    return cache
