"""Lithops' runtime-metadata disk cache, read while another process writes it.

Before a job, Lithops reads its runtime's metadata from ``~/.lithops/cache/runtimes/``
(``InternalStorage._cached_runtime_meta``), and writes that file in place (``open("w")``, then
``write``) when it has fetched or deployed the metadata. A process that reads the file in
between reads an empty or partial document and fails with ``JSONDecodeError`` before its
job exists. Two tasks starting on one worker host with a cold cache (a new host, a new
Lithops version or runtime) meet it; so did this project's CI, whose suites start
together. Nothing of the job exists then, and the writer finishes within milliseconds:
the submit is tried again (:func:`pywren_deferrable.submit.run_on_executor`).
"""

from __future__ import annotations

import json
import traceback

# Lithops' method that reads the file (lithops/storage/storage.py, 3.8).
_READER = "_cached_runtime_meta"


def torn_cache_file(err: BaseException) -> str | None:
    """The cache file ``err`` failed to read, if ``err`` is Lithops reading a runtime's
    metadata file that was being written (else None)."""
    if not isinstance(err, json.JSONDecodeError):
        return None
    for frame, _ in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_name == _READER:
            path = frame.f_locals.get("filename_local_path")
            return str(path) if path else "under ~/.lithops/cache/runtimes/"
    return None
