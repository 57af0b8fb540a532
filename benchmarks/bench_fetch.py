"""Row 5: fetching the results of a finished 10,000-call job on resume.

The job's objects (``.init``, ``status.json`` with each call's inline result ``i*i``,
``aggdata.pickle``, the function pickle) are written the way Lithops writes them (see
:mod:`benchmarks.lithops_layout`). Each side runs in its own process and only the
fetch is timed:

* this project: :func:`pywren_deferrable.results.afetch_results` as ``execute_complete``
  runs it (:mod:`benchmarks.fetch_worker`; its client's creation is included);
* Lithops: ``FunctionExecutor.get_result()`` on futures of the same job
  (:mod:`benchmarks.lithops_waiter`; the executor is built before the clock starts).

Both results are checked equal to ``[i*i for i in range(N)]``. 5a runs against moto;
5b against the harness's S3 responder, whose LIST does not scan the bucket, to show the
clients' own cost when the endpoint is not the bottleneck.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from typing import Any

from benchmarks.common import BenchResult, Context, Row, lithops_config, unique_bucket
from benchmarks.lithops_layout import JobLayout
from benchmarks.lithops_waiter import LithopsWaiter, digest
from benchmarks.s3_responder import Responder

NAME = "fetch"
GOAL = 2.0


def _ours(
    ctx: Context, layout: JobLayout, bucket: str, endpoint: str, variant: str = "package"
) -> dict[str, Any]:
    spec_path = str(ctx.scratch / f"fetch-{bucket}-{variant}.json")
    out_path = spec_path + ".out"
    with open(spec_path, "w", encoding="utf-8") as handle:
        json.dump({"job": layout.job_ref(bucket, endpoint).to_dict(), "variant": variant}, handle)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fetch_worker", spec_path, out_path],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"fetch_worker failed:\n{done.stderr[-3000:]}")
    with open(out_path, encoding="utf-8") as handle:
        out: dict[str, Any] = json.load(handle)
    os.remove(out_path)
    return out


def _lithops(waiter: LithopsWaiter, layout: JobLayout, bucket: str, endpoint: str) -> dict[str, Any]:
    waiter.send(
        {
            "bucket": bucket,
            "endpoint": endpoint,
            "executor_id": layout.executor_id,
            "job_id": layout.job_id,
            "calls": layout.calls,
        }
    )
    waiter.receive(120)
    return waiter.receive(900)


def _timing(reply: dict[str, Any]) -> str:
    return f"{reply['seconds']:.1f} s ({reply['cpu']:.1f} s CPU)"


def _requests(reply: dict[str, Any]) -> str:
    requests = reply["requests"]
    if isinstance(requests, int):
        return f"{requests:,} requests"
    return ", ".join(f"{count:,} {op}" for op, count in sorted(requests.items()))


def run(ctx: Context) -> BenchResult:
    result = BenchResult(NAME)
    calls = 1_000 if ctx.quick else 10_000
    values = [i * i for i in range(calls)]
    expected = digest(values)
    layout = JobLayout(ctx.status_template(), calls, seed=42)
    objects = layout.finished_objects(values)
    moto = ctx.moto()
    config = lithops_config(moto.endpoint, "bench-fetch-conn")
    with LithopsWaiter(config, str(ctx.scratch)) as waiter:
        # 5a: moto
        bucket = moto.create_bucket(unique_bucket("fetch"))
        moto.load(bucket, objects, str(ctx.scratch))
        cpu0 = moto.cpu_seconds()
        ours = _ours(ctx, layout, bucket, moto.endpoint)
        cpu1 = moto.cpu_seconds()
        theirs = _lithops(waiter, layout, bucket, moto.endpoint)
        cpu2 = moto.cpu_seconds()
        proposed = _ours(ctx, layout, bucket, moto.endpoint, "presigned")
        for name, reply in (("this project", ours), ("Lithops", theirs), ("the proposed change", proposed)):
            if reply["digest"] != expected:
                raise AssertionError(f"{name} returned other results than [i*i for i in range({calls})]")
        result.rows.append(
            Row(
                key="5a",
                what=f"fetch the results of a finished {calls:,}-call job on resume (moto)",
                project=f"{ours['seconds']:.1f} s ({ours['cpu']:.1f} s CPU, {_requests(ours)})",
                baseline=f"Lithops get_result(): {theirs['seconds']:.1f} s ({theirs['cpu']:.1f} s CPU, {_requests(theirs)})",
                ratio=ours["seconds"] / theirs["seconds"],
                goal=f"≥ {GOAL:.0f}x faster (ratio ≤ {1 / GOAL:.2f})",
                met=theirs["seconds"] / ours["seconds"] >= GOAL,
                note=f"same results asserted; moto CPU during the fetch: ours {cpu1 - cpu0:.1f} s, Lithops "
                f"{cpu2 - cpu1:.1f} s; proposed presigned GETs: {_timing(proposed)}",
            )
        )
        # 5b: the harness's responder, same objects
        objects_path = str(ctx.scratch / "fetch-objects.pickle")
        with open(objects_path, "wb") as handle:
            pickle.dump(objects, handle, protocol=pickle.HIGHEST_PROTOCOL)
        spec = {"bucket": "bench-fetch-responder", "objects_pickle": objects_path}
        with Responder(spec, str(ctx.scratch)) as responder:
            cpu0 = responder.cpu_seconds()
            ours_b = _ours(ctx, layout, spec["bucket"], responder.endpoint)
            cpu1 = responder.cpu_seconds()
            theirs_b = _lithops(waiter, layout, spec["bucket"], responder.endpoint)
            cpu2 = responder.cpu_seconds()
            proposed_b = _ours(ctx, layout, spec["bucket"], responder.endpoint, "presigned")
        os.remove(objects_path)
        for name, reply in (
            ("this project", ours_b),
            ("Lithops", theirs_b),
            ("the proposed change", proposed_b),
        ):
            if reply["digest"] != expected:
                raise AssertionError(f"{name} returned other results (responder)")
        result.rows.append(
            Row(
                key="5b",
                what=f"same fetch, {calls:,} calls, against the harness's S3 responder (endpoint not the bottleneck)",
                project=f"{ours_b['seconds']:.1f} s ({ours_b['cpu']:.1f} s CPU, {_requests(ours_b)})",
                baseline=f"Lithops get_result(): {theirs_b['seconds']:.1f} s ({theirs_b['cpu']:.1f} s CPU, {_requests(theirs_b)})",
                ratio=ours_b["seconds"] / theirs_b["seconds"],
                goal=f"≥ {GOAL:.0f}x faster",
                met=theirs_b["seconds"] / ours_b["seconds"] >= GOAL,
                note=f"responder CPU: ours {cpu1 - cpu0:.1f} s, Lithops {cpu2 - cpu1:.1f} s; proposed "
                f"presigned GETs: {_timing(proposed_b)}",
            )
        )
    return result
