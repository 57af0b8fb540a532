"""Row 1: worker slot-seconds ÷ job wall time, deferrable vs the seed's blocking wait.

A 4-call map of ``sleep_then`` (60 s each; ``--quick``: 10 s) on Lithops localhost
compute (4 worker processes, so the job lasts one sleep), through the real
``PyWrenMapOperator``. The deferrable job and the blocking (``deferrable=False``) job
run side by side, at the same time, on the same S3 endpoint.
"""

from __future__ import annotations

import threading
from typing import Any

from benchmarks.common import BenchResult, Context, Row, connection_env, private_tmpdir, unique_bucket
from benchmarks.flows import COLD, FORKED, FlowResult, blocking_flow, deferrable_flow

NAME = "slots"
GOAL = 0.02


def _spec(ctx: Context, seconds: float, label: str) -> dict[str, Any]:
    moto = ctx.moto()
    bucket = moto.create_bucket(unique_bucket("slots"))
    env = connection_env(moto.endpoint, bucket)
    env["TMPDIR"] = private_tmpdir(ctx.scratch, label)  # see common.prepare_environment
    return {
        "task_id": "slow_map",
        "function": "sleep_then",
        "iterdata": [1, 2, 3, 4],
        "extra_params": {"seconds": seconds},
        "executor_config": {"localhost": {"worker_processes": 4}},
        # Bounds a broken job (a worker that dies writes no status): a timeout event, no hang.
        "job_timeout": seconds + 300,
        "env": env,
    }


def _side_by_side(ctx: Context, seconds: float, how: str) -> tuple[FlowResult, FlowResult]:
    box: dict[str, Any] = {}

    def blocking() -> None:
        try:
            box["blocking"] = blocking_flow(ctx, _spec(ctx, seconds, f"{how}-blocking"), how)
        except Exception as err:
            box["blocking_error"] = err

    thread = threading.Thread(target=blocking)
    thread.start()
    try:
        deferred = deferrable_flow(ctx, _spec(ctx, seconds, f"{how}-deferrable"), how)
    finally:
        thread.join()
    if "blocking_error" in box:
        raise box["blocking_error"]
    return deferred, box["blocking"]


def _describe(flow: FlowResult) -> str:
    submit, resume = flow.children
    return (
        f"submit process {submit.lifetime:.1f} s (start-up/imports {submit.startup:.1f} s, "
        f"waiting in submit() for the detached runner {submit.submit_wait:.1f} s), "
        f"resume process {resume.lifetime:.1f} s (start-up/imports {resume.startup:.1f} s), "
        f"trigger {flow.trigger_seconds:.1f} s, job wall {flow.wall:.1f} s"
    )


def run(ctx: Context) -> BenchResult:
    seconds = 10.0 if ctx.quick else 60.0
    result = BenchResult(NAME)
    expected = [1, 2, 3, 4]
    for key, how, label in (
        ("1a", COLD, "new interpreter per task process"),
        ("1b", FORKED, "task process forked from a parent with Airflow loaded (as Airflow 3's supervisor)"),
    ):
        deferred, blocking = _side_by_side(ctx, seconds, how)
        for flow in (deferred, blocking):
            if flow.results != expected:
                raise AssertionError(f"{flow.flow} returned {flow.results!r}, expected {expected}")
        result.rows.append(
            Row(
                key=key,
                what=f"worker slot-s ÷ job wall, 4 x sleep {seconds:.0f} s map ({label})",
                project=f"{deferred.slot_ratio:.3f} ({deferred.slot_seconds:.1f} s / {deferred.wall:.1f} s)",
                baseline=f"{blocking.slot_ratio:.3f} ({blocking.slot_seconds:.1f} s / {blocking.wall:.1f} s)",
                ratio=deferred.slot_seconds / blocking.slot_seconds,
                goal=f"≤ {GOAL}",
                met=deferred.slot_ratio <= GOAL,
                note="baseline: deferrable=False (the seed's wait on the worker)"
                + (f"; --quick: {seconds:.0f} s sleeps, the goal is for ≥ 60 s jobs" if ctx.quick else ""),
            )
        )
        result.notes.append(f"{key} deferrable: {_describe(deferred)}")
        result.notes.append(
            f"{key} blocking: one process {blocking.wall:.1f} s (start-up/imports "
            f"{blocking.children[0].startup:.1f} s, submit() {blocking.children[0].submit_wait:.1f} s)"
        )
    return result
