"""One task's life through the real operator, timed: submit, trigger, resume.

* deferrable: a task process runs ``execute()`` until ``TaskDeferred`` (slot held from
  its start to its exit), the trigger polls in this process (the triggerer: no slot),
  then a second task process runs ``execute_complete()`` (slot held again);
* blocking: one task process with ``deferrable=False`` holds the slot for the whole job;
* plain: the same map as a plain Lithops script, one process.

The job's wall time runs from the first task process's start to the last one's exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Context, kill_process_group

COLD = "cold"
FORKED = "forked"
CHILD_TIMEOUT = 900.0


@dataclass
class ChildRun:
    """One task (or script) process."""

    mode: str
    start: float
    end: float
    out: dict[str, Any]

    @property
    def lifetime(self) -> float:
        return self.end - self.start

    @property
    def startup(self) -> float:
        """Process start until its main code ran (interpreter + imports when cold)."""
        return float(self.out.get("main_start", self.start)) - self.start

    @property
    def submit_wait(self) -> float:
        """Time inside the provider's ``submit()`` (waiting for the detached runner)."""
        if "submit_start" in self.out and "submit_end" in self.out:
            return float(self.out["submit_end"]) - float(self.out["submit_start"])
        return 0.0


@dataclass
class FlowResult:
    """A whole job through one flow."""

    flow: str
    how: str
    wall: float
    slot_seconds: float
    results: Any
    children: list[ChildRun] = field(default_factory=list)
    trigger_seconds: float = 0.0

    @property
    def slot_ratio(self) -> float:
        return self.slot_seconds / self.wall


def _write_spec(directory: Path, spec: dict[str, Any]) -> tuple[str, str]:
    fd, spec_path = tempfile.mkstemp(suffix=".json", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    return spec_path, spec_path[: -len(".json")] + ".out.json"


def run_child(ctx: Context, mode: str, spec: dict[str, Any], how: str) -> ChildRun:
    """Run one task process to its end; its lifetime is the slot it held."""
    directory = ctx.scratch / "children"
    directory.mkdir(exist_ok=True)
    spec_path, out_path = _write_spec(directory, spec)
    if how == COLD:
        module = "benchmarks.plain_lithops" if mode == "plain" else "benchmarks.task_process"
        argv = [sys.executable, "-m", module]
        argv += [spec_path, out_path] if mode == "plain" else [mode, spec_path, out_path]
        env = dict(os.environ, **(spec.get("env") or {}))
        log_path = spec_path[: -len(".json")] + ".log"
        with open(log_path, "wb") as log:
            start = time.time()
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                process.wait(CHILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
            end = time.time()
    else:
        from benchmarks.task_process import run_task

        forkserver = ctx.forkserver()
        child = forkserver.Process(target=run_task, args=(mode, spec_path, out_path))
        start = time.time()
        child.start()
        child.join(CHILD_TIMEOUT)
        if child.is_alive():
            child.kill()
            child.join()
        end = time.time()
    try:
        with open(out_path, encoding="utf-8") as handle:
            out = json.load(handle)
    except OSError:
        log_tail = ""
        if how == COLD:
            log_tail = Path(spec_path[: -len(".json")] + ".log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the {mode} process wrote no result; log:\n{log_tail}") from None
    if mode == "blocking":  # its job has ended: its runner must be gone too
        kill_process_group(out.get("runner_pid"))
    if out.get("error"):
        raise RuntimeError(f"the {mode} process failed: {out['error']}")
    return ChildRun(mode=mode, start=start, end=end, out=out)


def quiet_trigger_logs() -> None:
    """The trigger logs progress at INFO; keep the benchmark's output to the table."""
    logging.getLogger("pywren_deferrable").setLevel(logging.WARNING)
    logging.getLogger("airflow").setLevel(logging.WARNING)


def run_trigger(kwargs: dict[str, Any], timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
    """Run the trigger to its event in this process (the triggerer)."""
    from pywren_deferrable.triggers.job import PyWrenJobTrigger

    quiet_trigger_logs()

    async def wait() -> dict[str, Any]:
        event = await asyncio.wait_for(PyWrenJobTrigger(**kwargs).wait_for_event(), timeout)
        return dict(event.payload)

    return asyncio.run(wait())


def deferrable_flow(ctx: Context, spec: dict[str, Any], how: str) -> FlowResult:
    """submit process → trigger (here) → resume process."""
    os.environ.update(spec.get("env") or {})  # the trigger reads the Connection here
    submit = run_child(ctx, "submit", spec, how)
    kwargs = submit.out["trigger"]
    runner_pid = kwargs["job"].get("runner_pid")
    try:
        trigger_start = time.time()
        event = run_trigger(kwargs)
        trigger_end = time.time()
        if event.get("status") != "success":
            raise RuntimeError(f"the trigger fired {event.get('status')}: {event.get('message')}")
        resume = run_child(ctx, "resume", dict(spec, event=event), how)
    finally:
        kill_process_group(runner_pid)
    return FlowResult(
        flow="deferrable",
        how=how,
        wall=resume.end - submit.start,
        slot_seconds=submit.lifetime + resume.lifetime,
        results=resume.out["results"],
        children=[submit, resume],
        trigger_seconds=trigger_end - trigger_start,
    )


def blocking_flow(ctx: Context, spec: dict[str, Any], how: str) -> FlowResult:
    """One process with ``deferrable=False``: the seed's behaviour."""
    run = run_child(ctx, "blocking", spec, how)
    return FlowResult(
        flow="blocking",
        how=how,
        wall=run.lifetime,
        slot_seconds=run.lifetime,
        results=run.out["results"],
        children=[run],
    )


def plain_flow(ctx: Context, spec: dict[str, Any], how: str) -> FlowResult:
    """A plain Lithops script doing the same map."""
    run = run_child(ctx, "plain", spec, how)
    return FlowResult(
        flow="plain",
        how=how,
        wall=run.lifetime,
        slot_seconds=run.lifetime,
        results=run.out["results"],
        children=[run],
    )
