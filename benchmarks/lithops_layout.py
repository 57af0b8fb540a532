"""Status objects exactly as Lithops writes them, for jobs too large to run for real here.

:func:`capture_template` runs one real 3-call Lithops map (localhost compute, the moto
endpoint) and keeps what it wrote: the ``status.json`` of a call (every field, its
compressed log included), the ``.init`` naming, ``aggdata.pickle`` and the function
pickle. :class:`JobLayout` then writes the same objects for any number of calls, with
each call's own id, activation id, timestamps and inline result (``repr`` of the
pickled value, as the Lithops worker does).

``python -m benchmarks.lithops_layout ENDPOINT BUCKET`` is the capture run itself
(a separate process, so the harness never hosts Lithops worker processes).
"""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from pywren_deferrable.job import (
    INIT_SUFFIX,
    JOBS_PREFIX,
    JobRef,
    StorageLocation,
    call_id,
    call_prefix,
    executor_prefix,
    job_prefix,
    status_key,
)


@dataclass(frozen=True)
class StatusTemplate:
    """What one real Lithops call wrote."""

    status: dict[str, Any]
    aggdata_bytes_per_call: int
    func_pickle: bytes
    keys: list[str]
    lithops_version: str


def capture_template(ctx: Any) -> StatusTemplate:
    """Run a real 3-call map of ``square`` on Lithops and read back what it wrote."""
    from benchmarks.common import unique_bucket

    moto = ctx.moto()
    bucket = moto.create_bucket(unique_bucket("capture"))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.lithops_layout", moto.endpoint, bucket],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the Lithops capture run failed:\n{done.stderr[-3000:]}")
    executor_id = json.loads(done.stdout.strip().splitlines()[-1])["executor_id"]
    client = moto.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    prefix = job_prefix(executor_id, "M000")
    status = json.loads(
        client.get_object(Bucket=bucket, Key=status_key(executor_id, "M000", "00000"))["Body"].read()
    )
    aggdata = client.get_object(Bucket=bucket, Key=f"{prefix}aggdata.pickle")["Body"].read()
    func_key = next(k for k in keys if k.startswith(executor_prefix(executor_id)))
    func_pickle = client.get_object(Bucket=bucket, Key=func_key)["Body"].read()
    if pickle.loads(eval_bytes(status["result"])) != 0:
        raise RuntimeError("unexpected result in the captured status.json")
    return StatusTemplate(
        status=status,
        aggdata_bytes_per_call=max(1, len(aggdata) // 3),
        func_pickle=func_pickle,
        keys=keys,
        lithops_version=str(status.get("lithops_version") or "3.8.0"),
    )


def eval_bytes(literal: str) -> bytes:
    """The bytes of a ``repr(bytes)`` literal (as in ``status.json``'s ``result``)."""
    import ast

    value = ast.literal_eval(literal)
    assert isinstance(value, bytes)
    return value


class JobLayout:
    """The objects of one Lithops map job of ``calls`` calls, in Lithops' key layout.

    :param template: a captured :class:`StatusTemplate`.
    :param calls: the number of calls.
    :param executor_id: the executor id (random if not given).
    :param seed: seeds the activation ids and timestamps.
    """

    job_id = "M000"

    def __init__(
        self, template: StatusTemplate, calls: int, *, executor_id: str | None = None, seed: int = 0
    ) -> None:
        self.template = template
        self.calls = calls
        rnd = random.Random(seed)
        self.executor_id = executor_id or f"{rnd.getrandbits(24):06x}-0"
        # FaaS backends run one call per activation (chunksize 1): one activation id each.
        self.activations = [f"{rnd.getrandbits(48):012x}" for _ in range(calls)]
        self.submitted = time.time()

    @property
    def prefix(self) -> str:
        return job_prefix(self.executor_id, self.job_id)

    def job_objects(self) -> list[tuple[str, bytes]]:
        """``aggdata.pickle`` and the function pickle (written at submission)."""
        aggdata = pickle.dumps([{"x": i} for i in range(self.calls)])
        padding = max(0, self.template.aggdata_bytes_per_call * self.calls - len(aggdata))
        return [
            (f"{self.prefix}aggdata.pickle", aggdata + b"\0" * padding),
            (
                f"{JOBS_PREFIX}/{self.executor_id}/0123456789abcdef0123456789abcdef.func.pickle",
                self.template.func_pickle,
            ),
        ]

    def init_object(self, index: int) -> tuple[str, bytes]:
        """The empty ``<call>/<activation>.init`` a call writes when it starts."""
        key = f"{call_prefix(self.executor_id, self.job_id, call_id(index))}{self.activations[index]}{INIT_SUFFIX}"
        return key, b""

    def status_object(self, index: int, value: Any = None, *, exception: bool = False) -> tuple[str, bytes]:
        """The ``status.json`` a call writes when it ends, returning ``value`` (inline)."""
        status = dict(self.template.status)
        start = self.submitted + 1.0 + index * 0.001
        pickled = pickle.dumps(value)
        status.update(
            call_id=call_id(index),
            job_id=self.job_id,
            executor_id=self.executor_id,
            activation_id=self.activations[index],
            host_submit_tstamp=self.submitted,
            worker_start_tstamp=start,
            worker_func_start_tstamp=start + 0.05,
            worker_func_end_tstamp=start + 0.06,
            worker_end_tstamp=start + 0.08,
            exception=exception,
            result=None if exception else repr(pickled),
            func_result_size=float(len(pickled)),
        )
        return status_key(self.executor_id, self.job_id, call_id(index)), json.dumps(status).encode()

    def finished_objects(self, values: list[Any]) -> list[tuple[str, bytes]]:
        """Every object of a finished job whose call ``i`` returned ``values[i]``."""
        objects = self.job_objects()
        for index, value in enumerate(values):
            objects.append(self.init_object(index))
            objects.append(self.status_object(index, value))
        return objects

    def job_ref(self, bucket: str, endpoint: str) -> JobRef:
        """The JobRef the operator would defer with."""
        return JobRef(
            executor_id=self.executor_id,
            job_ids=(self.job_id,),
            total_calls={self.job_id: self.calls},
            storage=StorageLocation(kind="s3", bucket=bucket, backend="minio", endpoint=endpoint),
            call_type="map",
            engine_version=self.template.lithops_version,
        )


def _capture_main(endpoint: str, bucket: str) -> None:
    import lithops

    from benchmarks.common import lithops_config
    from benchmarks.payloads import square

    fexec = lithops.FunctionExecutor(config=lithops_config(endpoint, bucket))
    futures = fexec.map(square, [0, 1, 2])
    results = fexec.get_result(futures, show_progressbar=False)
    if results != [0, 1, 4]:
        raise SystemExit(f"unexpected results {results}")
    print(json.dumps({"executor_id": fexec.executor_id}))


if __name__ == "__main__":
    _capture_main(sys.argv[1], sys.argv[2])
