"""Row 6: end-to-end wall time of a 200-call map through the deferrable operator vs a plain
Lithops script doing the same map.

Deferrable: submit process → trigger (in this process, the triggerer) → resume process,
as in row 1; wall from the submit process's start to the resume process's exit. Plain:
``FunctionExecutor(config).map(square, range(200))`` then ``get_result()`` in one
process. Same config (Lithops localhost compute, the same moto endpoint, Lithops'
cleaner off in both), run alternately. 6a starts every process as a new interpreter;
6b forks them from a parent that has Airflow, the provider and Lithops imported (so
both sides skip their imports, as an Airflow 3 worker does).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import BenchResult, Context, Row, connection_env, median, private_tmpdir, unique_bucket
from benchmarks.flows import COLD, FORKED, FlowResult, deferrable_flow, plain_flow

NAME = "e2e"
CALLS = 200
GOAL = 1.3


def _spec(ctx: Context, label: str) -> dict[str, Any]:
    moto = ctx.moto()
    bucket = moto.create_bucket(unique_bucket("e2e"))
    env = connection_env(moto.endpoint, bucket)
    env["TMPDIR"] = private_tmpdir(ctx.scratch, label)
    return {
        "task_id": "map_200",
        "function": "square",
        "iterdata": list(range(CALLS)),
        "job_timeout": 900,
        "env": env,
    }


def _describe(flow: FlowResult) -> str:
    if flow.flow == "plain":
        child = flow.children[0]
        return f"plain {flow.wall:.1f} s (start-up/imports {child.startup:.1f} s)"
    submit, resume = flow.children
    return (
        f"deferrable {flow.wall:.1f} s = submit process {submit.lifetime:.1f} s (start-up/imports "
        f"{submit.startup:.1f} s, submit() {submit.submit_wait:.1f} s) + trigger {flow.trigger_seconds:.1f} s "
        f"+ resume process {resume.lifetime:.1f} s (start-up/imports {resume.startup:.1f} s)"
    )


def run(ctx: Context) -> BenchResult:
    result = BenchResult(NAME)
    rounds = 1 if ctx.quick else 2
    expected = [i * i for i in range(CALLS)]
    for key, how, label in (
        ("6a", COLD, "new interpreters"),
        ("6b", FORKED, "processes forked, imports done"),
    ):
        deferred: list[FlowResult] = []
        plain: list[FlowResult] = []
        for number in range(rounds):
            deferred.append(deferrable_flow(ctx, _spec(ctx, f"e2e-{how}-d{number}"), how))
            plain.append(plain_flow(ctx, _spec(ctx, f"e2e-{how}-p{number}"), how))
        for flow in deferred + plain:
            if flow.results != expected:
                raise AssertionError(f"{flow.flow} returned other results than [i*i for i in range({CALLS})]")
        ours = median([f.wall for f in deferred])
        theirs = median([f.wall for f in plain])
        result.rows.append(
            Row(
                key=key,
                what=f"end-to-end wall of a {CALLS}-call map, deferrable operator vs plain Lithops script ({label})",
                project=f"{ours:.1f} s",
                baseline=f"{theirs:.1f} s",
                ratio=ours / theirs,
                goal=f"≤ {GOAL}x",
                met=ours / theirs <= GOAL,
                note=f"median of {rounds} alternating run(s); localhost compute, same moto endpoint",
            )
        )
        for flow in deferred + plain:
            result.notes.append(f"{key}: {_describe(flow)}")
    return result
