"""Row 9 ("scale"): thousands of real job triggers on one triggerer event loop.

Each design runs in a fresh process (so that its CPU and RSS are its own): N
:class:`~pywren_deferrable.triggers.job.PyWrenJobTrigger` run on one event loop, as a
triggerer runs them, arriving at random moments over one ``poll_interval`` (10 s). Every
job has 1,000 calls, 900 finished and already read (the poller is seeded with them, as
after its first polls), 100 running; nothing changes. The endpoint is the harness's S3
responder (:mod:`benchmarks.s3_responder`, its own process, canned listings; its CPU is
reported, not counted).

* project: the trigger as shipped (lean S3 read path, one page per poll, compact
  done-set, the per-loop poll scheduler);
* previous: the same trigger running the previous poll path side by side in the same
  run: :mod:`benchmarks.baseline_poll` (the poller before this change) over the
  aiobotocore client (``S3StatusSource`` without the lean reader), without the scheduler.

After a warm-up (the triggers' adaptive polling backs off from 0.5 s to ``poll_interval``
in ~35 s; the warm-up's largest loop block is reported too: it is what a triggerer
restart costs), a window measures: CPU of this process as % of one core; the longest
event-loop block (a watchdog sleeping 50 ms, as Airflow's triggerer checks); the gaps
between successive polls of each trigger (a due poll is *on time* when it comes within
2x ``poll_interval`` of the previous one); RSS growth per 1,000 triggers.

A last measure, in this process: LIST requests per poll of one job with 1,000 calls
running (1,001 keys after the watermark), project vs previous poll path.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks.common import BenchResult, Context, Row, connection_env, loadavg

NAME = "scale"
BUCKET = "bench-scale"
CALLS = 1_000
DONE = 900
POLL_INTERVAL = 10.0
WATCHDOG_SLEEP = 0.05
GOAL_BLOCK = 0.2
GOAL_CPU_1000 = 0.30
PROJECT = "project"
PREVIOUS = "previous"


def job_ref(index: int, endpoint: str, calls: int = CALLS) -> Any:
    from pywren_deferrable.job import JobRef, StorageLocation

    return JobRef(
        executor_id=f"{index:06x}-0",
        job_ids=("M000",),
        total_calls={"M000": calls},
        storage=StorageLocation(kind="s3", bucket=BUCKET, backend="minio", endpoint=endpoint),
        call_type="map",
        engine_version="3.8.0",
    )


def seeded(design: str, job: Any, done: int) -> Any:
    """A poller (this project's or the previous one) that has read the first ``done`` statuses."""
    from pywren_deferrable.job import call_id

    if design == PREVIOUS:
        from benchmarks.baseline_poll import JobPoller as PreviousPoller

        previous = PreviousPoller(job)
        for progress in previous.progress.values():
            progress.started.update(progress.order)
            progress.done.update(call_id(i) for i in range(done))
            progress.advance_watermark()
        return previous
    from pywren_deferrable.triggers.poll import JobPoller

    poller = JobPoller(job)
    for progress in poller.progress.values():
        for i in range(done):
            progress.finished(call_id(i))
        progress.advance_watermark()
    return poller


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _NoScheduler:
    """The previous trigger: no slots, no pacing, no jitter."""

    async def turn(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def slot(self, _location: Any) -> AsyncIterator[None]:
        yield

    def pause(self, interval: float, _poll_interval: float) -> float:
        return interval


def trigger_class(design: str, polls: dict[int, list[float]], errors: list[str]) -> Any:
    from pywren_deferrable.triggers.job import PyWrenJobTrigger

    class BenchTrigger(PyWrenJobTrigger):
        index = 0

        def _new_poller(self) -> Any:
            poller = seeded(design, self.job, DONE)
            record = polls.setdefault(self.index, [])
            poll = poller.poll

            async def timed(source: Any) -> Any:
                try:
                    result = await poll(source)
                except Exception as err:
                    errors.append(f"{type(err).__name__}: {err}")
                    raise
                if result.done != DONE:
                    errors.append(f"saw {result.done} done")
                record.append(time.monotonic())
                return result

            poller.poll = timed
            return poller

        if design == PREVIOUS:
            scheduler = _NoScheduler()  # type: ignore[assignment]

            @contextlib.asynccontextmanager
            async def _status_source(self, hook: Any) -> AsyncIterator[Any]:
                from pywren_deferrable.hooks.s3_client_pool import shared_s3_client
                from pywren_deferrable.storages.s3 import S3Credentials, S3StatusSource

                credentials = await hook._credentials_for(self.job.storage)
                async with shared_s3_client(
                    endpoint=self.job.storage.endpoint,
                    region=self.job.storage.region,
                    credentials=credentials or S3Credentials(None, None),
                ) as client:
                    yield S3StatusSource(client, self.job.storage.bucket)

    # Logged (and quieted) as the trigger it stands for.
    BenchTrigger.__module__ = PyWrenJobTrigger.__module__
    return BenchTrigger


async def _worker(config: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.flows import quiet_trigger_logs
    from benchmarks.moto_server import process_cpu_seconds

    quiet_trigger_logs()
    design, count = config["design"], config["triggers"]
    warmup, window = config["warmup"], config["window"]
    polls: dict[int, list[float]] = {}
    errors: list[str] = []
    cls = trigger_class(design, polls, errors)
    # One trigger first, alone: what every trigger shares (imports, the Connection, the
    # shared clients) is then loaded, and the RSS measured after it is the triggers' own.
    primer = cls(job=job_ref(count, config["endpoint"]).to_dict(), poll_interval=POLL_INTERVAL)
    primer.index = count
    primer_task = asyncio.create_task(primer.wait_for_event())
    while not polls.get(count):
        await asyncio.sleep(0.05)
    gc.collect()
    rss_before = rss_bytes()
    triggers = []
    for i in range(count):
        trigger = cls(job=job_ref(i, config["endpoint"]).to_dict(), poll_interval=POLL_INTERVAL)
        trigger.index = i
        triggers.append(trigger)
    rnd = random.Random(9)
    stop = asyncio.Event()
    blocks: dict[str, float] = {"warmup": 0.0, "window": 0.0, "done": 0.0, "over": 0}
    phase = {"name": "warmup"}

    async def watchdog() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(WATCHDOG_SLEEP)
            late = loop.time() - before - WATCHDOG_SLEEP
            blocks[phase["name"]] = max(blocks[phase["name"]], late)
            if os.environ.get("BENCH_SCALE_DEBUG") and late > 0.5:
                print(f"block {late:.2f}s at {time.monotonic() - t0:.1f}", file=sys.stderr)
            if late > GOAL_BLOCK and phase["name"] == "window":
                blocks["over"] += 1

    async def arrive(trigger: Any) -> None:
        await asyncio.sleep(rnd.uniform(0, POLL_INTERVAL))
        await trigger.wait_for_event()

    # Garbage collections: their longest pause, a loop block of its own kind.
    gc_pauses: dict[str, float] = {"max": 0.0, "gen2": 0, "started": 0.0}

    def on_gc(step: str, info: dict[str, int]) -> None:
        if step == "start":
            gc_pauses["started"] = time.perf_counter()
            return
        pause = time.perf_counter() - gc_pauses["started"]
        gc_pauses[f"max_{phase['name']}"] = max(gc_pauses.get(f"max_{phase['name']}", 0.0), pause)
        if os.environ.get("BENCH_SCALE_DEBUG") and pause > 0.2:
            print(f"gc gen{info['generation']} {pause:.2f}s at {time.monotonic() - t0:.1f}", file=sys.stderr)
        if phase["name"] == "window":
            gc_pauses["max"] = max(gc_pauses["max"], time.perf_counter() - gc_pauses["started"])
            gc_pauses["gen2"] += info["generation"] == 2

    gc.callbacks.append(on_gc)
    t0 = time.monotonic()
    dog = asyncio.create_task(watchdog())
    tasks = [asyncio.create_task(arrive(t)) for t in triggers]
    await asyncio.sleep(warmup)
    phase["name"] = "window"
    cpu, start = time.process_time(), time.monotonic()
    responder_cpu = process_cpu_seconds(config["responder_pid"])
    await asyncio.sleep(window)
    cpu, end = time.process_time() - cpu, time.monotonic()
    phase["name"] = "done"
    responder_cpu = process_cpu_seconds(config["responder_pid"]) - responder_cpu
    # The freezer's periodic thaw (every 30 min in a triggerer), timed once here: one walk
    # of the whole heap, freeing the cyclic garbage kept frozen since the first poll.
    heap = getattr(cls.scheduler, "heap", None)
    freezes, thaw_pause, thaw_found = 0, 0.0, 0
    if heap is not None:
        freezes = heap.freezes
        started = time.perf_counter()
        thaw_found = heap.thaw()
        thaw_pause = time.perf_counter() - started
    gc.collect()
    rss_after = rss_bytes()
    stop.set()
    for task in [*tasks, primer_task]:
        task.cancel()
    await asyncio.gather(*tasks, primer_task, return_exceptions=True)
    await dog
    # Gaps between successive polls of each trigger, over the window (the last poll
    # before the window opens the first gap; a trigger not polled since counts until the end).
    gaps: list[float] = []
    in_window = 0
    for i in range(count):
        times = polls.get(i, [])
        before = [t for t in times if t < start]
        inside = [t for t in times if start <= t <= end]
        in_window += len(inside)
        previous = before[-1] if before else None
        for t in inside:
            if previous is not None:
                gaps.append(t - previous)
            previous = t
        gaps.append(end - previous if previous is not None else end - start)
    late = sum(1 for g in gaps if g > 2 * POLL_INTERVAL)
    return {
        "design": design,
        "triggers": count,
        "window": end - start,
        "cpu": cpu,
        "polls": in_window,
        "due": count * (end - start) / POLL_INTERVAL,
        "max_block": blocks["window"],
        "warmup_block": blocks["warmup"],
        "blocks_over": int(blocks["over"]),
        "gaps": len(gaps),
        "late": late,
        "max_gap": max(gaps) if gaps else 0.0,
        "rss_per_1000": (rss_after - rss_before) / count * 1000,
        "gc_max": gc_pauses["max"],
        "gc_max_warmup": gc_pauses.get("max_warmup", 0.0),
        "gc_gen2": int(gc_pauses["gen2"]),
        "freezes": freezes,
        "thaw_pause": thaw_pause,
        "thaw_found": thaw_found,
        "elapsed": end - t0,
        "responder_cpu": responder_cpu,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "load": loadavg(),
    }


def worker_main(argv: list[str]) -> None:
    config = json.loads(argv[0])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(_worker(config))
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


def run_worker(config: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scale", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            parsed: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return parsed
    raise RuntimeError(
        f"scale worker {config['design']} x{config['triggers']} failed: {process.stderr[-2000:]}"
    )


async def lists_with_1000_running(ctx: Context) -> dict[str, list[int]]:
    """LIST requests per poll of one job, 2,000 calls, 1,000 done and 1,000 running."""
    from benchmarks.s3_responder import Responder
    from pywren_deferrable.config import S3Credentials
    from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY
    from pywren_deferrable.hooks.s3_client_pool import shared_s3_client
    from pywren_deferrable.job import StorageLocation
    from pywren_deferrable.storages import open_status_source
    from pywren_deferrable.storages.s3 import S3StatusSource

    calls, done = 2_000, 1_000
    spec = {"bucket": BUCKET, "synthetic": {"jobs": 1, "calls": calls, "done": done}}
    credentials = S3Credentials(EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY)
    out: dict[str, list[int]] = {}
    with Responder(spec, str(ctx.scratch)) as responder:
        job = job_ref(0, responder.endpoint, calls)
        location: StorageLocation = job.storage
        for design in (PROJECT, PREVIOUS):
            poller = seeded(design, job, done)
            counts = []
            if design == PROJECT:
                opened = open_status_source(location, credentials)
            else:
                opened = contextlib.AsyncExitStack()
            async with opened as source:
                if design == PREVIOUS:
                    client = await source.enter_async_context(
                        shared_s3_client(endpoint=location.endpoint, region=None, credentials=credentials)
                    )
                    source = S3StatusSource(client, BUCKET)
                for _ in range(6):
                    before = source.requests
                    result = await poller.poll(source)
                    counts.append(source.requests - before)
                    if result.done != done or sum(p.running for p in result.jobs) != calls - done:
                        raise AssertionError(f"{design}: {result.summary()}")
            out[design] = counts
    return out


def _describe(w: dict[str, Any]) -> str:
    return (
        f"{w['cpu'] / w['window']:.0%} of a core, max block {w['max_block']:.2f} s, "
        f"{w['gaps'] - w['late']:,}/{w['gaps']:,} polls within 2x interval (longest gap {w['max_gap']:.1f} s), "
        f"{w['polls']:,}/{w['due']:,.0f} polls, RSS {w['rss_per_1000'] / 2**20:.1f} MiB per 1,000 triggers"
        + (f"; the heap's thaw (once per 30 min) blocks {w['thaw_pause']:.2f} s" if w.get("freezes") else "")
    )


def run(ctx: Context) -> BenchResult:
    from benchmarks.s3_responder import Responder

    result = BenchResult(NAME)
    sizes = [200, 1_000] if ctx.quick else [1_000, 5_000]
    warmup, window = (40.0, 20.0) if ctx.quick else (45.0, 40.0)
    template = json.dumps(
        dict(ctx.status_template().status, call_id="@CALL@", result=repr(b"\x80\x04K\x00."))
    )
    spec = {
        "bucket": BUCKET,
        "canned": True,
        "synthetic": {"jobs": max(sizes) + 1, "calls": CALLS, "done": DONE, "status_template": template},
    }
    windows: dict[tuple[str, int], dict[str, Any]] = {}
    with Responder(spec, str(ctx.scratch)) as responder:
        env = connection_env(responder.endpoint, BUCKET)
        assert responder.process is not None
        for count in sizes:
            for design in (PROJECT, PREVIOUS):
                config = {
                    "design": design,
                    "triggers": count,
                    "endpoint": responder.endpoint,
                    "warmup": warmup,
                    "window": window,
                    "responder_pid": responder.process.pid,
                }
                windows[design, count] = run_worker(config, env, timeout=warmup + window + 600)
    lists = asyncio.run(lists_with_1000_running(ctx))
    for number, count in enumerate(sizes):
        project, previous = windows[PROJECT, count], windows[PREVIOUS, count]
        goals = [project["max_block"] <= GOAL_BLOCK, project["late"] == 0, project["errors"] == 0]
        goal = f"no block > {GOAL_BLOCK} s, every due poll within 2x interval"
        if count == 1_000:
            goals.append(project["cpu"] / project["window"] < GOAL_CPU_1000)
            goal += f", < {GOAL_CPU_1000:.0%} of a core"
        result.rows.append(
            Row(
                key=f"9{'ab'[number]}",
                what=(
                    f"{count:,} job triggers on one triggerer event loop (idle jobs of {CALLS:,} calls, "
                    f"{CALLS - DONE} running, poll_interval {POLL_INTERVAL:.0f} s): CPU, max loop block, "
                    "polls on time, RSS"
                ),
                project=_describe(project),
                baseline=f"previous poll path: {_describe(previous)}",
                ratio=(project["cpu"] / max(project["polls"], 1))
                / (previous["cpu"] / max(previous["polls"], 1)),
                goal=goal,
                met=all(goals),
                note=(
                    "real PyWrenJobTrigger objects, each design in its own process; endpoint: the harness's S3 "
                    "responder (canned listings, own process, CPU not counted); ratio: CPU per poll"
                ),
            )
        )
    project_lists, previous_lists = lists[PROJECT], lists[PREVIOUS]
    result.rows.append(
        Row(
            key="9c",
            what="LIST requests per poll, one idle job of 2,000 calls with 1,000 running (1,001 keys after the watermark)",
            project=f"{sum(project_lists) / len(project_lists):.2f} LIST (per poll: {project_lists})",
            baseline=f"previous poll path: {sum(previous_lists) / len(previous_lists):.2f} LIST (per poll: {previous_lists})",
            ratio=sum(project_lists) / sum(previous_lists),
            goal="1 LIST per poll",
            met=max(project_lists) <= 1,
            note="one page per poll: a poll lists from the watermark, the next continues where that page "
            "ended; each key is seen within 2 polls",
        )
    )
    for (design, count), w in sorted(windows.items(), key=lambda item: (item[0][1], item[0][0])):
        result.notes.append(
            f"9 {design} x{count:,}: {w['cpu']:.1f} s CPU in a {w['window']:.0f} s window, {w['polls']:,} polls "
            f"({1000 * w['cpu'] / max(w['polls'], 1):.2f} ms CPU per poll), {w['late']} late of {w['gaps']:,} "
            f"gaps, longest gap {w['max_gap']:.1f} s, {w['blocks_over']} watchdog wake-ups later than "
            f"{GOAL_BLOCK} s, max block during the warm-up (arrivals, backoff) {w['warmup_block']:.2f} s, "
            f"longest garbage collection in the window {w['gc_max']:.2f} s ({w['gc_gen2']} full ones), "
            + (
                f"{w['freezes']} heap freezes; one thaw (every 30 min) blocked {w['thaw_pause']:.2f} s and freed "
                f"{w['thaw_found']:,} objects of cyclic garbage kept frozen over {w['elapsed']:.0f} s, "
                if w.get("freezes")
                else ""
            )
            + f"RSS +{w['rss_per_1000'] / 2**20:.1f} MiB per 1,000 triggers, responder {w['responder_cpu']:.1f} s "
            f"CPU in the window, load average {w['load']:.1f}, errors {w['errors']} {w['first_error']}"
        )
    return result


if __name__ == "__main__":
    worker_main(sys.argv[1:])
