"""The task processes of the worker-slot and end-to-end benchmarks.

A worker slot is held by the process that runs the task. Two ways to start one:

* **cold**: ``python -m benchmarks.task_process MODE SPEC OUT``, a new interpreter that
  imports Airflow and the provider first (what the brief's measurement counts);
* **forked**: forked from a process that has already imported them (multiprocessing's
  forkserver with this module preloaded), as Airflow 3's supervisor forks the task
  runner from an interpreter that has Airflow loaded.

Modes: ``submit`` runs ``PyWrenMapOperator(...).execute(context={})`` until it raises
``TaskDeferred`` and writes the trigger's kwargs; ``resume`` runs
``execute_complete(context={}, event=...)``; ``blocking`` runs the operator with
``deferrable=False`` (the seed's behaviour: the process waits for the job); ``plain``
runs the same map as a plain Lithops script (see :mod:`benchmarks.plain_lithops`).

The instrumentation below only wraps :func:`pywren_deferrable.operators.base.submit`
to time it and to learn the detached runner's pid (so that the harness can stop it);
it does not change what the operator does.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from typing import Any

from airflow.sdk.exceptions import TaskDeferred

import pywren_deferrable.operators.base as operator_base
from benchmarks import payloads
from benchmarks.plain_lithops import run_plain
from pywren_deferrable import PyWrenMapOperator

MODES = ("submit", "resume", "blocking", "plain")
_marks: dict[str, Any] = {}
_original_submit = vars(operator_base)["submit"]


def _timed_submit(*args: Any, **kwargs: Any) -> Any:
    _marks["submit_start"] = time.time()
    job = _original_submit(*args, **kwargs)
    _marks["submit_end"] = time.time()
    _marks["runner_pid"] = job.runner_pid
    return job


vars(operator_base)["submit"] = _timed_submit


def build_operator(spec: dict[str, Any]) -> PyWrenMapOperator:
    return PyWrenMapOperator(
        task_id=spec.get("task_id", "bench_map"),
        map_function=getattr(payloads, spec["function"]),
        map_iterdata=spec["iterdata"],
        extra_params=spec.get("extra_params"),
        pywren_executor_config=spec.get("executor_config") or {},
        deferrable=spec.get("deferrable", True),
        job_timeout=spec.get("job_timeout"),
    )


def run_task(mode: str, spec_path: str, out_path: str) -> None:
    """Run one task process in ``mode``; write what happened to ``out_path`` (JSON)."""
    started = time.time()
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    os.environ.update(spec.get("env") or {})
    out: dict[str, Any] = {"main_start": started}
    try:
        if mode == "plain":
            out["results"] = run_plain(spec)
        elif mode == "resume":
            out["results"] = build_operator(spec).execute_complete(context={}, event=spec["event"])
        elif mode == "blocking":
            out["results"] = build_operator(dict(spec, deferrable=False)).execute(context={})
        elif mode == "submit":
            try:
                build_operator(spec).execute(context={})
                out["error"] = "the operator did not defer"
            except TaskDeferred as deferred:
                out["trigger"] = deferred.trigger.serialize()[1]
        else:
            out["error"] = f"unknown mode {mode!r}"
    except Exception as err:
        out["error"] = f"{type(err).__name__}: {err}"
    out.update(_marks)
    out["main_end"] = time.time()
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(out, handle)


def forkserver_context() -> Any:
    """A forkserver context whose server has this module (Airflow, the provider, Lithops)
    imported; warmed up so that the first measured fork does not pay for the imports."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["benchmarks.task_process", "lithops"])
    warm = ctx.Process(target=_noop)
    warm.start()
    warm.join(300)
    return ctx


def stop_forkserver() -> None:
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def _noop() -> None:
    return None


if __name__ == "__main__":
    run_task(sys.argv[1], sys.argv[2], sys.argv[3])
