"""Row 3: one event loop running N concurrent pollers, as a triggerer runs N triggers.

moto cannot serve thousands of pollers, so the endpoint is the harness's own minimal
S3-compatible responder (:mod:`benchmarks.s3_responder`, a separate process: its CPU is
not counted). Every job has 1,000 calls, 900 finished and already read by the poller (the
state a trigger reaches after its first polls: its memory is seeded with them), 100 still
running (their ``.init`` objects exist). Nothing changes during the window: this is the
steady state of idle in-progress jobs, polled every ``poll_interval`` (the trigger's
default, 10 s) from a random phase.

Designs, each in its own window on the same loop and responder:

* project: :class:`~pywren_deferrable.triggers.poll.JobPoller` over the S3 source the
  trigger opens (``storages.open_status_source``: the lean read path of
  ``storages/s3_lean.py`` on the loop's shared aiohttp session, signed with the shared
  client's keys);
* previous poll path: :mod:`benchmarks.baseline_poll` (the poller before issue 15) over
  the shared aiobotocore client, as the trigger polled until then;
* client-per-trigger: the previous poller, but each poller creates its own aiobotocore
  client (from one shared session, the cheaper variant);
* naive: the shared client, but listing each job's whole prefix every poll.

Measured in this process: CPU seconds per poll (``time.process_time`` over the window ÷
polls completed in it) and the longest loop block, measured like Airflow's triggerer
watchdog: a coroutine that sleeps 0.05 s in a loop and records its largest overshoot.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import resource
import time
from dataclasses import dataclass
from typing import Any

from aiobotocore.session import get_session

from benchmarks.baseline_poll import JobPoller as PreviousPoller
from benchmarks.common import BenchResult, Context, Row
from benchmarks.naive import NaivePoller
from benchmarks.s3_clients import s3_client
from benchmarks.s3_responder import Responder
from pywren_deferrable.config import S3Credentials
from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY
from pywren_deferrable.hooks.s3_client_pool import shared_s3_client
from pywren_deferrable.job import JobRef, StorageLocation, call_id
from pywren_deferrable.storages import open_status_source
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.triggers.status import S3StatusSource

NAME = "pollers"
BUCKET = "bench-pollers"
CALLS = 1_000
DONE = 900
SMALL_TAIL_DONE = 995  # a job near its end, or one with few workers (localhost): 5 running
POLL_INTERVAL = 10.0  # the trigger's default poll_interval (idle jobs back off to it)
WATCHDOG_SLEEP = 0.05
GOAL_BLOCK = 0.2
PROJECT = "project"
PREVIOUS = "previous poll path"
PER_TRIGGER = "client-per-trigger"
NAIVE = "naive"


@dataclass
class Window:
    design: str
    jobs: int
    seconds: float
    cpu: float
    polls: int
    scheduled: float
    max_block: float
    blocks_over_goal: int
    responder_cpu: float
    errors: int
    first_error: str
    client_setup: float

    @property
    def cpu_per_poll(self) -> float:
        return self.cpu / self.polls if self.polls else float("nan")


def job_ref(index: int, endpoint: str) -> JobRef:
    return JobRef(
        executor_id=f"{index:06x}-0",
        job_ids=("M000",),
        total_calls={"M000": CALLS},
        storage=StorageLocation(kind="s3", bucket=BUCKET, backend="minio", endpoint=endpoint),
        call_type="map",
        engine_version="3.8.0",
    )


def seeded_poller(design: str, job: JobRef, done: int) -> Any:
    """A poller that has already read the first ``done`` statuses (its earlier polls)."""
    calls = [call_id(i) for i in range(done)]
    if design == NAIVE:
        naive = NaivePoller(job)
        naive.done.update(calls)
        return naive
    if design in (PREVIOUS, PER_TRIGGER):
        previous = PreviousPoller(job)
        for progress in previous.progress.values():
            progress.started.update(progress.order)
            progress.done.update(calls)
            progress.advance_watermark()
        return previous
    poller = JobPoller(job)
    for progress in poller.progress.values():
        for call in calls:
            progress.finished(call)
        progress.advance_watermark()
    return poller


async def _watchdog(stop: asyncio.Event, box: dict[str, float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(WATCHDOG_SLEEP)
        late = loop.time() - before - WATCHDOG_SLEEP
        box["max"] = max(box.get("max", 0.0), late)
        if late > GOAL_BLOCK:
            box["over"] = box.get("over", 0) + 1


async def run_window(design: str, jobs: int, done: int, seconds: float, responder: Responder) -> Window:
    """N pollers of ``design`` polling idle jobs for ``seconds``; only the window is measured.

    Set-up (building the pollers, and for this project's design entering the shared
    client once, which a triggerer pays once) happens before the window; the
    client-per-trigger design creates its clients inside the window, as triggers do
    when they start.
    """
    endpoint = responder.endpoint
    credentials = S3Credentials(EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY)
    session = get_session()  # client-per-trigger: one session, a client per poller
    rnd = random.Random(5)
    stop = asyncio.Event()
    counters = {"polls": 0, "errors": 0}
    in_window = {"open": True}
    first_error: list[str] = []
    stack = contextlib.AsyncExitStack()
    setup = time.process_time()
    # The shared clients are opened once before the window, as a triggerer pays once.
    if design == PROJECT:
        location = job_ref(0, endpoint).storage
        await stack.enter_async_context(open_status_source(location, credentials))
    elif design in (PREVIOUS, NAIVE):
        await stack.enter_async_context(
            shared_s3_client(endpoint=endpoint, region=None, credentials=credentials)
        )
    client_setup = time.process_time() - setup
    pollers = [seeded_poller(design, job_ref(i, endpoint), done) for i in range(jobs)]
    gc.collect()

    def client_for() -> contextlib.AbstractAsyncContextManager[Any]:
        if design == PER_TRIGGER:
            return s3_client(endpoint, session=session)
        if design == PROJECT:
            # The source as the trigger opens it (shared clients, borrowed per trigger).
            return open_status_source(job_ref(0, endpoint).storage, credentials)
        # The provider's pool: every poller borrows the one client (kept open above).
        return shared_s3_client(endpoint=endpoint, region=None, credentials=credentials)

    async def poller_task(poller: Any) -> None:
        await asyncio.sleep(rnd.uniform(0, POLL_INTERVAL))
        async with client_for() as client:
            source: Any = client if design == PROJECT else S3StatusSource(client, BUCKET)
            while not stop.is_set():
                try:
                    result = await poller.poll(source)
                    if result.done != done:
                        counters["errors"] += 1
                    if in_window["open"]:
                        counters["polls"] += 1
                except Exception as err:
                    counters["errors"] += 1
                    if not first_error:
                        first_error.append(f"{type(err).__name__}: {err}")
                await asyncio.sleep(POLL_INTERVAL)

    box: dict[str, float] = {}
    watchdog = asyncio.create_task(_watchdog(stop, box))
    responder_cpu = responder.cpu_seconds()
    cpu, wall = time.process_time(), time.monotonic()
    tasks = [asyncio.create_task(poller_task(p)) for p in pollers]
    await asyncio.sleep(seconds)
    in_window["open"] = False
    cpu = time.process_time() - cpu
    wall = time.monotonic() - wall
    responder_cpu = responder.cpu_seconds() - responder_cpu
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await watchdog
    await stack.aclose()
    return Window(
        design=design,
        jobs=jobs,
        seconds=wall,
        cpu=cpu,
        polls=counters["polls"],
        scheduled=jobs * wall / POLL_INTERVAL,
        max_block=box.get("max", 0.0),
        blocks_over_goal=int(box.get("over", 0)),
        responder_cpu=responder_cpu,
        errors=counters["errors"],
        first_error=first_error[0] if first_error else "",
        client_setup=client_setup,
    )


def _status_template(ctx: Context) -> str:
    template = dict(ctx.status_template().status)
    template.update(call_id="@CALL@", result=repr(b"\x80\x04K\x00."))
    return json.dumps(template)


def _describe(window: Window | None) -> str:
    if window is None:
        return "not run (saturated at a smaller N already)"
    per_poll = f"{1000 * window.cpu_per_poll:.1f} ms CPU/poll" if window.polls else "no poll completed"
    return f"{per_poll}, max block {window.max_block:.2f} s, {window.polls:,}/{window.scheduled:,.0f} polls"


def run(ctx: Context) -> BenchResult:
    result = BenchResult(NAME)
    sizes = [100, 500] if ctx.quick else [100, 1_000, 5_000]
    seconds = 20.0 if ctx.quick else 30.0
    designs = [PROJECT, PREVIOUS, PER_TRIGGER, NAIVE]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    template = _status_template(ctx)
    windows: dict[tuple[str, int, int], Window] = {}
    shapes = [(DONE, sizes, designs), (SMALL_TAIL_DONE, sizes[-1:], [PROJECT, PREVIOUS])]
    for done, shape_sizes, shape_designs in shapes:
        spec = {
            "bucket": BUCKET,
            "canned": True,  # listings rendered once per shape: the responder is no bottleneck
            "synthetic": {
                "jobs": max(shape_sizes),
                "calls": CALLS,
                "done": done,
                "status_template": template,
            },
        }
        with Responder(spec, str(ctx.scratch)) as responder:
            saturated: set[str] = set()
            for jobs in shape_sizes:
                for design in shape_designs:
                    if design in saturated and design in (PER_TRIGGER, NAIVE):
                        continue  # saturated at a smaller N already: more pollers only make it worse
                    window = asyncio.run(run_window(design, jobs, done, seconds, responder))
                    windows[design, jobs, done] = window
                    if window.polls < 0.5 * window.scheduled:
                        saturated.add(design)
                    gc.collect()
    rows = [(jobs, DONE) for jobs in sizes] + [(sizes[-1], SMALL_TAIL_DONE)]
    for number, (jobs, done) in enumerate(rows):
        project = windows[PROJECT, jobs, done]
        previous = windows[PREVIOUS, jobs, done]
        per_trigger = windows.get((PER_TRIGGER, jobs, done))
        naive = windows.get((NAIVE, jobs, done))
        baseline = f"previous poll path {_describe(previous)}"
        if done == DONE:
            baseline += f"; client-per-trigger {_describe(per_trigger)}; naive {_describe(naive)}"
        result.rows.append(
            Row(
                key=f"3{'abcdef'[number]}",
                what=(
                    f"{jobs:,} pollers on one event loop (idle jobs of {CALLS:,} calls, {CALLS - done} running, "
                    f"polled every {POLL_INTERVAL:.0f} s): CPU per poll, max loop block, polls done/due"
                ),
                project=_describe(project),
                baseline=baseline,
                ratio=project.cpu_per_poll / previous.cpu_per_poll if previous.polls else None,
                goal=f"no block > {GOAL_BLOCK} s" + (" at 5,000" if jobs == 5_000 else ""),
                met=project.max_block <= GOAL_BLOCK,
                note=(
                    "endpoint: the harness's S3 responder (aiohttp, own process, canned listings, CPU not "
                    "counted), not moto; ratio: CPU/poll vs the previous poll path"
                ),
            )
        )
        for design in designs:
            measured = windows.get((design, jobs, done))
            if measured is None:
                continue
            behind = measured.polls < 0.8 * measured.scheduled
            result.notes.append(
                f"3{'abcdef'[number]} {measured.design}: {measured.cpu:.1f} s CPU in a {measured.seconds:.0f} s window "
                f"({measured.cpu / measured.seconds:.0%} of a core), {measured.polls:,} polls of "
                f"{measured.scheduled:,.0f} due{' (saturated)' if behind else ''}, "
                f"{measured.blocks_over_goal} watchdog wake-ups later than {GOAL_BLOCK} s, responder "
                f"{measured.responder_cpu:.1f} s CPU, errors {measured.errors} {measured.first_error}"
                + (
                    f", shared client created once before the window ({measured.client_setup:.2f} s CPU)"
                    if measured.design != PER_TRIGGER
                    else ""
                )
            )
    return result
