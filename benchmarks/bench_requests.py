"""Row 2: S3 requests per poll of a 10,000-call job, against the moto server.

The job's objects are what Lithops writes (captured from a real run, see
:mod:`benchmarks.lithops_layout`). The job is in progress: the first ``DONE0`` calls
have finished, ``RUNNING`` calls are running (they have written their ``.init``; 1,000 is
Lithops' default ``max_workers`` on Code Engine and AWS Lambda, so at most that many
calls of a map run at once), the rest have not started. Between two polls 50 calls
finish (their ``status.json`` is PUT over HTTP) and as many new calls start (their
``.init``). Three pollers watch the same job, each through its own client whose requests
are counted by botocore's ``before-send`` hook:

* this project's :class:`~pywren_deferrable.triggers.poll.JobPoller` (``StartAfter``
  watermark, one page per poll: with more than a page of keys after the watermark, the
  next poll continues where the page ended). Its requests are the same whatever client
  sends them; here they go through aiobotocore so that the hook counts them;
* the previous poll path (:mod:`benchmarks.baseline_poll`: every page each poll);
* naive: lists the whole prefix every poll, GETs each status.json not read before;
* naive re-list: lists the whole prefix and GETs every status.json, every poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from benchmarks.baseline_poll import JobPoller as PreviousPoller
from benchmarks.common import BenchResult, Context, Row, unique_bucket
from benchmarks.lithops_layout import JobLayout
from benchmarks.naive import NaivePoller, NaiveRelistPoller
from benchmarks.s3_clients import s3_client
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.triggers.status import S3StatusSource

NAME = "requests"
PER_POLL = 50
LIST = "ListObjectsV2"
GET = "GetObject"


@dataclass
class Series:
    """Requests of one poller, poll by poll."""

    name: str
    lists: list[int] = field(default_factory=list)
    gets: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    # Calls finished in the bucket when each poll ran (what a poll could have seen).
    expected: list[int] = field(default_factory=list)

    def lagging(self) -> int:
        """Polls that saw fewer calls done than had finished."""
        return sum(1 for seen, finished in zip(self.done, self.expected, strict=True) if seen < finished)

    def mean(self, values: list[int] | list[float], polls: slice) -> float:
        chosen = list(values[polls])
        return sum(chosen) / len(chosen)


@dataclass
class Scenario:
    key: str
    label: str
    calls: int
    done0: int
    running: int
    steps: int
    idle: int
    in_order: bool
    with_relist: bool


class JobInProgress:
    """The job's state in the bucket, advanced step by step over HTTP."""

    def __init__(self, ctx: Context, scenario: Scenario) -> None:
        self.moto = ctx.moto()
        self.bucket = self.moto.create_bucket(unique_bucket("requests"))
        self.layout = JobLayout(ctx.status_template(), scenario.calls, seed=7)
        self.scenario = scenario
        self.rnd = random.Random(11)
        self.finished = set(range(scenario.done0))
        self.running = list(range(scenario.done0, min(scenario.calls, scenario.done0 + scenario.running)))
        self.next_call = scenario.done0 + len(self.running)
        objects = self.layout.job_objects()
        for index in sorted(self.finished):
            objects += [self.layout.init_object(index), self.layout.status_object(index, index)]
        objects += [self.layout.init_object(index) for index in self.running]
        self.moto.load(self.bucket, objects, str(ctx.scratch))
        self.client = self.moto.client()
        self.pool = ThreadPoolExecutor(8)

    def step(self, count: int) -> int:
        """``count`` running calls finish and as many new ones start (PUTs over HTTP)."""
        count = min(count, len(self.running))
        if self.scenario.in_order:
            ending, self.running = self.running[:count], self.running[count:]
        else:
            ending = self.rnd.sample(self.running, count)
            self.running = [c for c in self.running if c not in set(ending)]
        starting = list(range(self.next_call, min(self.scenario.calls, self.next_call + count)))
        self.next_call += len(starting)
        self.running += starting
        objects = [self.layout.status_object(i, i) for i in ending]
        objects += [self.layout.init_object(i) for i in starting]
        list(
            self.pool.map(lambda o: self.client.put_object(Bucket=self.bucket, Key=o[0], Body=o[1]), objects)
        )
        self.finished.update(ending)
        return len(ending)

    def close(self) -> None:
        self.pool.shutdown()


async def _measure(ctx: Context, scenario: Scenario) -> tuple[dict[str, Series], JobInProgress]:
    state = JobInProgress(ctx, scenario)
    job = state.layout.job_ref(state.bucket, state.moto.endpoint)
    pollers: dict[str, Any] = {
        "project": JobPoller(job),
        "previous": PreviousPoller(job),
        "naive": NaivePoller(job),
    }
    if scenario.with_relist:
        pollers["relist"] = NaiveRelistPoller(job)
    counts = {name: Counter[str]() for name in pollers}
    series = {name: Series(name) for name in pollers}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name in pollers:
            clients[name] = await stack.enter_async_context(
                s3_client(state.moto.endpoint, counts=counts[name])
            )
        sources = {name: S3StatusSource(clients[name], state.bucket) for name in pollers}
        total_polls = 1 + scenario.steps + scenario.idle
        for poll_number in range(total_polls):
            if 1 <= poll_number <= scenario.steps:
                await asyncio.to_thread(state.step, PER_POLL)
            for name, poller in pollers.items():
                before = Counter(counts[name])
                cpu = time.process_time()
                outcome = await poller.poll(sources[name])
                series[name].cpu.append(time.process_time() - cpu)
                delta = counts[name] - before
                series[name].lists.append(delta[LIST])
                series[name].gets.append(delta[GET])
                series[name].done.append(outcome.done)
                series[name].expected.append(len(state.finished))
        expected = len(state.finished)
        for name, s in series.items():
            if s.done[-1] != expected:
                raise AssertionError(f"{name} poller saw {s.done[-1]} calls done, {expected} are")
        stack.callback(state.close)
    return series, state


def _fmt(lists: float, gets: float) -> str:
    return f"{lists:.2f} LIST + {gets:.0f} GET"


def run(ctx: Context) -> BenchResult:
    result = BenchResult(NAME)
    calls = 2_000 if ctx.quick else 10_000
    done0 = 200 if ctx.quick else 1_000
    running = 200 if ctx.quick else 1_000
    steps = 4 if ctx.quick else 8
    scenarios = [
        Scenario("2a", "calls finish in call order", calls, done0, running, steps, 3, True, True),
        Scenario("2b", "calls finish in random order", calls, done0, running, steps, 3, False, False),
        Scenario("2d", "in call order, few workers (localhost-like)", calls, done0, 8, steps, 3, True, False),
    ]
    idle_row: Row | None = None
    for scenario in scenarios:
        per_poll = min(PER_POLL, scenario.running)
        goal_lists = 1 + per_poll / 1000
        series, _state = asyncio.run(_measure(ctx, scenario))
        steady = slice(2, 1 + scenario.steps)  # polls after the first step (steady state)
        idle = slice(1 + scenario.steps, None)
        project, naive, previous = series["project"], series["naive"], series["previous"]
        p_list, p_get = project.mean(project.lists, steady), project.mean(project.gets, steady)
        n_list, n_get = naive.mean(naive.lists, steady), naive.mean(naive.gets, steady)
        baseline = (
            f"previous poll path {_fmt(previous.mean(previous.lists, steady), previous.mean(previous.gets, steady))}; "
            f"naive {_fmt(n_list, n_get)}"
        )
        if "relist" in series:
            relist = series["relist"]
            baseline += (
                f"; re-list {_fmt(relist.mean(relist.lists, steady), relist.mean(relist.gets, steady))}"
            )
        what = (
            f"S3 requests per poll, {scenario.calls:,}-call job in progress, "
            f"{per_poll} calls finish "
            f"between polls, {scenario.running:,} running, {scenario.label} (steady state)"
        )
        result.rows.append(
            Row(
                key=scenario.key,
                what=what,
                project=_fmt(p_list, p_get),
                baseline=baseline,
                ratio=(p_list + p_get) / (n_list + n_get),
                goal=f"≤ {goal_lists:.2f} LIST + new GETs (each status read once over the run)",
                # GETs are counted over the whole run: with one page per poll a status may be
                # read a poll later (see the notes), never twice.
                met=p_list <= goal_lists and sum(project.gets) <= project.done[-1],
                note=(
                    "counted with botocore's before-send hook; GET = one per status.json read; "
                    f"over the run: project {sum(project.gets):,} GETs for {project.done[-1]:,} calls done"
                ),
            )
        )
        if scenario.key == "2a":
            p_idle, n_idle = project.mean(project.lists, idle), naive.mean(naive.lists, idle)
            idle_row = Row(
                key="2c",
                what=f"S3 requests per poll, same job idle (nothing finishes between polls, {scenario.running:,} running)",
                project=_fmt(p_idle, project.mean(project.gets, idle)),
                baseline=f"previous poll path {_fmt(previous.mean(previous.lists, idle), previous.mean(previous.gets, idle))}; "
                f"naive {_fmt(n_idle, naive.mean(naive.gets, idle))}; re-list "
                f"{_fmt(series['relist'].mean(series['relist'].lists, idle), series['relist'].mean(series['relist'].gets, idle))}",
                ratio=p_idle / n_idle,
                goal="≤ 1 LIST",
                met=p_idle <= 1,
            )
        listed_tail = scenario.running + per_poll + 1
        result.notes.append(
            f"{scenario.key}: first poll (cold, e.g. after a triggerer restart): project "
            f"{_fmt(project.lists[0], project.gets[0])}, naive {_fmt(naive.lists[0], naive.gets[0])}; "
            f"steady client CPU per poll: project {1000 * project.mean(project.cpu, steady):.0f} ms, naive "
            f"{1000 * naive.mean(naive.cpu, steady):.0f} ms; keys after the watermark each poll ≈ "
            f"{listed_tail:,} (.init of running calls + new status.json + aggdata.pickle, which sorts after every call); "
            f"project LIST per poll {project.lists}, polls that saw fewer calls done than had finished "
            f"{project.lagging()} of {len(project.done)} (previous poll path {previous.lagging()}), every finished "
            "call seen by the end"
        )
    if idle_row is not None:
        result.rows.insert(1, idle_row)
    return result
