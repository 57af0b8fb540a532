"""Row 4: completion-detection latency, last status object written → the trigger's event.

A short job (10 calls, all started) in moto; the harness writes the calls' ``status.json``
(Lithops' content, PUT over HTTP) at random moments 1-4 s after the trigger starts, as
calls of a few seconds would end. Latency = the trigger's ``wait_for_event()`` returning
minus the last PUT's completion. Default settings: ``poll_interval`` 10 s, the trigger's
adaptive 0.5 s fast polling.

Baseline, side by side on the same job at the same time: Lithops' own ``get_result()``
(its storage job monitor, ``monitoring_interval`` 2 s, in its own process), which is
what the seed waited with.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from benchmarks.common import (
    BenchResult,
    Context,
    Row,
    connection_env,
    lithops_config,
    median,
    percentile,
    unique_bucket,
)
from benchmarks.flows import quiet_trigger_logs
from benchmarks.lithops_layout import JobLayout
from benchmarks.lithops_waiter import LithopsWaiter, digest

NAME = "latency"
CALLS = 10
GOAL = 1.0


async def _one_run(ctx: Context, waiter: LithopsWaiter, run: int) -> tuple[float, float]:
    from pywren_deferrable.triggers.job import PyWrenJobTrigger

    moto = ctx.moto()
    bucket = moto.create_bucket(unique_bucket("latency"))
    layout = JobLayout(ctx.status_template(), CALLS, seed=1000 + run)
    values = [i * i for i in range(CALLS)]
    moto.load(bucket, layout.job_objects() + [layout.init_object(i) for i in range(CALLS)], str(ctx.scratch))
    waiter.send(
        {"bucket": bucket, "executor_id": layout.executor_id, "job_id": layout.job_id, "calls": CALLS}
    )
    await asyncio.to_thread(waiter.receive, 120)
    job = layout.job_ref(bucket, moto.endpoint)
    trigger = asyncio.create_task(PyWrenJobTrigger(job=job.to_dict()).wait_for_event())
    client = moto.client()
    rnd = random.Random(run)
    start = time.time()
    moments = sorted(rnd.uniform(1.0, 4.0) for _ in range(CALLS))
    order = list(range(CALLS))
    rnd.shuffle(order)
    last_written = 0.0
    for moment, index in zip(moments, order, strict=True):
        await asyncio.sleep(max(0.0, start + moment - time.time()))
        key, body = layout.status_object(index, values[index])
        await asyncio.to_thread(client.put_object, Bucket=bucket, Key=key, Body=body)
        last_written = time.time()
    event = await asyncio.wait_for(trigger, 120)
    trigger_latency = time.time() - last_written
    if event.payload["status"] != "success":
        raise AssertionError(f"trigger fired {event.payload}")
    reply = await asyncio.to_thread(waiter.receive, 120)
    if reply["digest"] != digest(values):
        raise AssertionError("Lithops returned other results")
    return trigger_latency, float(reply["done"]) - last_written


def run(ctx: Context) -> BenchResult:
    result = BenchResult(NAME)
    runs = 6 if ctx.quick else 20
    moto = ctx.moto()
    ctx.status_template()
    env = connection_env(moto.endpoint, "bench-latency-conn")
    import os

    os.environ.update(env)  # the trigger reads the Connection (credentials) here
    quiet_trigger_logs()
    ours: list[float] = []
    lithops: list[float] = []
    config: dict[str, Any] = lithops_config(moto.endpoint, "bench-latency-conn")
    with LithopsWaiter(config, str(ctx.scratch)) as waiter:
        for number in range(runs):
            trigger_latency, lithops_latency = asyncio.run(_one_run(ctx, waiter, number))
            ours.append(trigger_latency)
            lithops.append(lithops_latency)
    result.rows.append(
        Row(
            key="4",
            what=f"completion-detection latency, last status.json written → event, {CALLS}-call job, "
            f"{runs} runs (median / p95)",
            project=f"{median(ours):.2f} s / {percentile(ours, 95):.2f} s",
            baseline=f"Lithops get_result(): {median(lithops):.2f} s / {percentile(lithops, 95):.2f} s",
            ratio=median(ours) / median(lithops),
            goal=f"≤ {GOAL:.0f} s median",
            met=median(ours) <= GOAL,
            note="default settings (poll_interval 10 s, adaptive 0.5 s polling); moto; the two waiters watch the same job at the same time",
        )
    )
    result.notes.append(
        "4 trigger latencies (s): "
        + ", ".join(f"{v:.2f}" for v in ours)
        + "; Lithops: "
        + ", ".join(f"{v:.2f}" for v in lithops)
    )
    return result
