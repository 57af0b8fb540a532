"""The trigger's metrics: what it sends to Airflow's Stats, and that Stats really sends it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from lithops_objects import write_call
from test_trigger_events import BUCKET, EXEC, make_job

from pywren_deferrable.triggers import job as trigger_module
from pywren_deferrable.triggers.job import PyWrenJobTrigger
from pywren_deferrable.triggers.status import LocalStatusSource


class RecordingStats:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any, dict[str, Any] | None]] = []

    def incr(self, name: str, count: int = 1, *, tags: dict[str, Any] | None = None) -> None:
        self.sent.append(("incr", name, count, tags))

    def timing(self, name: str, value: float, *, tags: dict[str, Any] | None = None) -> None:
        self.sent.append(("timing", name, value, tags))

    def total(self, name: str) -> int:
        return sum(count for kind, n, count, _tags in self.sent if kind == "incr" and n == name)


async def test_counts_polls_requests_calls_and_the_event(tmp_path, use_source, monkeypatch) -> None:
    root = str(tmp_path)
    for call in ("00000", "00001"):
        write_call(root, BUCKET, EXEC, "M000", call, value=1)
    write_call(root, BUCKET, EXEC, "M000", "00002", error="KeyError: 'k'")
    use_source(LocalStatusSource(root, BUCKET))
    stats = RecordingStats()
    monkeypatch.setattr(trigger_module.TriggerMetrics, "stats", property(lambda self: stats))
    event = (await PyWrenJobTrigger(job=make_job(root, 3), poll_interval=0.1).wait_for_event()).payload
    assert event["status"] == "failed"
    assert stats.total("pywren_deferrable.polls") == 1
    assert stats.total("pywren_deferrable.requests") >= 1 + 3  # one listing, three status reads
    tags = {"executor_id": EXEC, "job_id": "M000"}
    assert ("incr", "pywren_deferrable.calls_done", 2, tags) in stats.sent
    assert ("incr", "pywren_deferrable.calls_failed", 1, tags) in stats.sent
    assert ("incr", "pywren_deferrable.jobs_finished", 1, {"status": "failed"}) in stats.sent
    timings = {name for kind, name, _v, _t in stats.sent if kind == "timing"}
    assert timings == {"pywren_deferrable.poll_duration", "pywren_deferrable.detection_latency"}


async def test_calls_are_counted_once_across_polls(tmp_path, use_source, monkeypatch) -> None:
    root = str(tmp_path)
    write_call(root, BUCKET, EXEC, "M000", "00000", value=1)
    write_call(root, BUCKET, EXEC, "M000", "00001", running=True)
    source = LocalStatusSource(root, BUCKET)
    use_source(source)
    stats = RecordingStats()
    monkeypatch.setattr(trigger_module.TriggerMetrics, "stats", property(lambda self: stats))
    original = source.list_objects
    polls = 0

    def list_objects(prefix: str, start_after: str = ""):  # the call ends after two polls
        nonlocal polls
        polls += 1
        if polls == 3:
            write_call(root, BUCKET, EXEC, "M000", "00001", value=2)
        return original(prefix, start_after)

    source.list_objects = list_objects  # type: ignore[method-assign]
    event = (await PyWrenJobTrigger(job=make_job(root, 2), poll_interval=0.05).wait_for_event()).payload
    assert event["status"] == "success"
    assert stats.total("pywren_deferrable.calls_done") == 2
    assert stats.total("pywren_deferrable.polls") == polls


def test_stats_reach_a_statsd_server() -> None:
    """With ``[metrics] statsd_on``, the names arrive at a real UDP listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(20)
        script = textwrap.dedent(
            """
            from pywren_deferrable.triggers.metrics import stats_module
            stats = stats_module()
            stats.incr("pywren_deferrable.polls")
            stats.timing("pywren_deferrable.poll_duration", 12.5)
            """
        )
        env = dict(
            os.environ,
            AIRFLOW__METRICS__STATSD_ON="True",
            AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
            AIRFLOW__METRICS__STATSD_PORT=str(server.getsockname()[1]),
            AIRFLOW__METRICS__STATSD_PREFIX="airflow",
        )
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
        server.settimeout(2)
        received: set[str] = set()
        with contextlib.suppress(TimeoutError):
            while True:  # Airflow sends metrics of its own as well
                received.update(server.recv(65536).decode().splitlines())
    ours = {line for line in received if "pywren_deferrable" in line}
    assert ours == {
        "airflow.pywren_deferrable.polls:1|c",
        "airflow.pywren_deferrable.poll_duration:12.500000|ms",
    }


@pytest.fixture
def use_source(monkeypatch: pytest.MonkeyPatch):
    from test_trigger_events import use_source as fixture

    return fixture.__wrapped__(monkeypatch)  # type: ignore[attr-defined]
