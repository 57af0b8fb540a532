"""Lithops reads its runtime-metadata cache file while another process writes it
(:mod:`pywren_deferrable.lithops_cache`): run for real on Lithops' localhost compute and the
local S3 endpoint, with Lithops' own cache code on a private cache directory. The read is
made to meet a writer that has opened the file and not yet written it (what CI saw:
``JSONDecodeError: Expecting value`` at submit)."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lithops
import lithops.storage.storage as lithops_storage
import pytest
from lithops_local_cache import private_lithops_cache
from payloads.functions import add

from pywren_deferrable.lithops_cache import torn_cache_file
from pywren_deferrable.submit import TORN_CACHE_ATTEMPTS, JobSpec, SubmitError, run_on_executor

pytestmark = pytest.mark.integration


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return private_lithops_cache(tmp_path, monkeypatch)


@pytest.fixture
def warm_executor(lithops_config: dict[str, Any], cache_dir: Path) -> Iterator[Any]:
    """An executor whose first job wrote the runtime's metadata to the private cache."""
    fexec = lithops.FunctionExecutor(config=copy.deepcopy(lithops_config))
    assert fexec.get_result(fexec.map(add, [1])) == [1]
    lithops_storage.RUNTIME_META_CACHE.clear()  # the next job reads the file again
    yield fexec


def meta_file(cache: Path) -> Path:
    (path,) = cache.rglob("*.meta.json")
    return path


def reads_meeting_a_writer(monkeypatch: pytest.MonkeyPatch, finishes_writing: bool) -> list[str]:
    """Lithops' reader, run while another process holds the file truncated (``open("w")``):
    the writer finishes right after the first read, or never. Returns the paths read."""
    original: Callable[..., Any] = lithops_storage.InternalStorage._cached_runtime_meta
    reads: list[str] = []

    def read(self: Any, cache_key: str, path: str) -> Any:
        reads.append(path)
        if len(reads) > 1:
            return original(self, cache_key, path)
        content = Path(path).read_text()
        Path(path).write_text("")
        try:
            return original(self, cache_key, path)
        finally:
            if finishes_writing:
                Path(path).write_text(content)

    monkeypatch.setattr(lithops_storage.InternalStorage, "_cached_runtime_meta", read)
    return reads


def test_a_read_that_meets_a_writer_is_tried_again(
    warm_executor: Any, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reads = reads_meeting_a_writer(monkeypatch, finishes_writing=True)
    spec = JobSpec(call_type="map", function=add, iterdata=[1, 2, 3], config={})
    calls_before = len(warm_executor.futures)
    with caplog.at_level(logging.WARNING, logger="pywren_deferrable.submit"):
        futures = run_on_executor(warm_executor, spec)
    assert warm_executor.get_result(futures) == [1, 2, 3]
    assert len(reads) == 2 and reads[0] == str(meta_file(cache_dir))
    assert f"Lithops read {reads[0]} while it was being written" in caplog.text
    # One job of three calls: the failed read created none (it only took a job id).
    assert len({f.job_id for f in futures}) == 1
    assert len(warm_executor.futures) == calls_before + 3


def test_a_file_that_stays_unreadable_fails_naming_it(
    warm_executor: Any, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = reads_meeting_a_writer(monkeypatch, finishes_writing=False)
    spec = JobSpec(call_type="map", function=add, iterdata=[1, 2], config={})
    calls_before = len(warm_executor.futures)
    with pytest.raises(SubmitError, match="is not valid JSON") as raised:
        run_on_executor(warm_executor, spec)
    assert str(meta_file(cache_dir)) in str(raised.value) and "delete the file" in str(raised.value)
    assert len(reads) == TORN_CACHE_ATTEMPTS
    assert len(warm_executor.futures) == calls_before


def test_other_json_errors_are_not_taken_for_a_torn_cache() -> None:
    with pytest.raises(json.JSONDecodeError) as raised:
        json.loads("")
    assert torn_cache_file(raised.value) is None
    assert torn_cache_file(ValueError("Expecting value")) is None
