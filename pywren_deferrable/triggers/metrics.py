"""The trigger's metrics, through Airflow's own Stats (statsd, Datadog or OpenTelemetry, as the
deployment's ``[metrics]`` section configures; nothing when metrics are off).

Names (all counters unless said otherwise; tags ``executor_id`` and ``job_id`` on per-job ones, so
backends with tags give per-job series and plain statsd sums them into totals):

``pywren_deferrable.polls``               polls of job status objects
``pywren_deferrable.requests``            storage requests those polls made (÷ polls: per poll)
``pywren_deferrable.poll_duration``       timer: how long one poll took (ms)
``pywren_deferrable.calls_done``          calls that ended successfully (per job: an inner job
                                          whose futures a call returned by its job key)
``pywren_deferrable.calls_failed``        calls that failed or were lost (per job)
``pywren_deferrable.jobs_finished``       jobs whose trigger fired, tag ``status``
``pywren_deferrable.detection_latency``   timer: newest status.json written -> event fired (ms;
                                          bounded below by the storage clock's resolution)
"""

from __future__ import annotations

import importlib
import logging
import time
from types import ModuleType
from typing import Any

from pywren_deferrable.job import JobRef
from pywren_deferrable.triggers.poll import PollResult

log = logging.getLogger(__name__)
PREFIX = "pywren_deferrable"


def stats_module() -> ModuleType:
    """The Stats functions of this process's Airflow component.

    The triggerer sets up Airflow core's copy of the stats module, a task process the Task
    SDK's; a process where neither was set up (a test, ``dag.test()``) gets the SDK's,
    set up from the ``[metrics]`` configuration.
    """
    from airflow.sdk._shared.observability.metrics import stats as sdk_shared
    from airflow.sdk.observability import stats as sdk_stats

    try:
        core_stats: ModuleType | None = importlib.import_module("airflow._shared.observability.metrics.stats")
    except ImportError:  # a worker with the Task SDK only
        core_stats = None

    if core_stats is not None and getattr(core_stats, "_factory", None) is not None:
        return core_stats
    if getattr(sdk_shared, "_factory", None) is None:
        from airflow.sdk.observability.metrics.stats_utils import get_stats_factory

        sdk_stats.initialize(factory=get_stats_factory(), export_legacy_names=False)
    return sdk_stats


class TriggerMetrics:
    """Counts what one trigger's polls saw, and sends the differences to Stats.

    :param job: the job being watched (its ids become tags).
    :param stats: the Stats functions (:func:`stats_module` when not given).
    """

    def __init__(self, job: JobRef, stats: Any = None) -> None:
        self.job = job
        self._stats = stats
        self._sent: dict[str, tuple[int, int]] = {}  # job id -> (done ok, failed) already counted

    @property
    def stats(self) -> Any:
        if self._stats is None:
            self._stats = stats_module()
        return self._stats

    def _send(self, action: str, *args: Any, **kwargs: Any) -> None:
        # Metrics must never fail a trigger: a misconfigured backend is logged, not raised.
        try:
            getattr(self.stats, action)(*args, **kwargs)
        except Exception as err:
            log.debug("metrics: %s failed: %s", action, err)

    def poll(self, result: PollResult, requests: int, seconds: float) -> None:
        """One poll that made ``requests`` requests in ``seconds`` ended with ``result``."""
        self._send("incr", f"{PREFIX}.polls")
        self._send("incr", f"{PREFIX}.requests", requests)
        self._send("timing", f"{PREFIX}.poll_duration", seconds * 1000.0)
        for progress in result.jobs:
            done_ok = len(progress.done) - len(progress.failed)
            failed = len(progress.failed)
            sent_ok, sent_failed = self._sent.get(progress.name, (0, 0))
            tags = {"executor_id": self.job.executor_id, "job_id": progress.name}
            if done_ok > sent_ok:
                self._send("incr", f"{PREFIX}.calls_done", done_ok - sent_ok, tags=tags)
            if failed > sent_failed:
                self._send("incr", f"{PREFIX}.calls_failed", failed - sent_failed, tags=tags)
            self._sent[progress.name] = (max(done_ok, sent_ok), max(failed, sent_failed))

    def finished(self, status: str, result: PollResult | None, now: float | None = None) -> None:
        """The trigger fires a ``status`` event after the poll that gave ``result``."""
        self._send("incr", f"{PREFIX}.jobs_finished", tags={"status": status})
        newest = max((p.last_status_at for p in result.jobs), default=0.0) if result else 0.0
        if newest > 0:
            latency = max(0.0, (now if now is not None else time.time()) - newest)
            self._send("timing", f"{PREFIX}.detection_latency", latency * 1000.0)
