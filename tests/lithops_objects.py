"""Write a job's objects the way Lithops 3.8 does, for tests that need a job in storage
without running one (shapes measured on real Lithops runs: see DESIGN.md)."""

from __future__ import annotations

import base64
import json
import os
import pickle
import time
import zlib
from typing import Any

from pywren_deferrable.job import JOBS_PREFIX, call_prefix, job_prefix, output_key, status_key

INLINE_LIMIT = 8 * 1024


def status_body(call: str, *, value: Any = None, error: str | None = None) -> tuple[bytes, bytes | None]:
    """``status.json`` (and ``output.pickle`` for results of 8 KiB or more) of one call."""
    status: dict[str, Any] = {
        "exception": error is not None,
        "activation_id": "0123456789ab",
        "call_id": call,
        "worker_start_tstamp": time.time(),
        "type": "__end__",
    }
    output = None
    if error is not None:
        log = (
            "---------------------- FUNCTION LOG ----------------------\n"
            "----------------------- EXCEPTION !-----------------------\n"
            "Traceback (most recent call last):\n"
            '  File "<dynamic-code>", line 3, in f\n'
            f"{error}\n"
            "----------------------------------------------------------\n"
        )
        status["exc_info"] = repr(b"not unpickled by the project")
        status["logs"] = base64.b64encode(zlib.compress(log.encode())).decode()
    else:
        pickled = pickle.dumps(value)
        status["func_result_size"] = len(pickled)
        if len(pickled) < INLINE_LIMIT:
            status["result"] = repr(pickled)
        else:
            output = pickled
    return json.dumps(status).encode(), output


def write_call(
    root: str,
    bucket: str,
    executor_id: str,
    job_id: str,
    call: str,
    *,
    started: float | None = None,
    **kw: Any,
) -> None:
    """Write the objects of one call under ``root/bucket`` (Lithops localhost storage)."""
    base = os.path.join(root, bucket)
    init = os.path.join(base, call_prefix(executor_id, job_id, call), "0123456789ab.init")
    os.makedirs(os.path.dirname(init), exist_ok=True)
    open(init, "wb").close()
    if started is not None:
        os.utime(init, (started, started))
    if kw.get("running"):
        return
    body, output = status_body(call, value=kw.get("value"), error=kw.get("error"))
    with open(os.path.join(base, status_key(executor_id, job_id, call)), "wb") as handle:
        handle.write(body)
    if output is not None:
        with open(os.path.join(base, output_key(executor_id, job_id, call)), "wb") as handle:
            handle.write(output)


def write_job_files(root: str, bucket: str, executor_id: str, job_id: str) -> None:
    """The job-level objects: the iterdata and the pickled function."""
    base = os.path.join(root, bucket)
    os.makedirs(os.path.join(base, job_prefix(executor_id, job_id)), exist_ok=True)
    with open(os.path.join(base, job_prefix(executor_id, job_id), "aggdata.pickle"), "wb") as handle:
        handle.write(b"data")
    os.makedirs(os.path.join(base, JOBS_PREFIX, executor_id), exist_ok=True)
    with open(os.path.join(base, JOBS_PREFIX, executor_id, "abc.func.pickle"), "wb") as handle:
        handle.write(b"func")
