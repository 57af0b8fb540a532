"""What every benchmark shares: the environment, the S3 endpoint, result rows, helpers.

Nothing here imports Airflow at module level: :func:`prepare_environment` must set
``AIRFLOW_HOME`` and friends before Airflow is first imported.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class Row:
    """One line of the results table.

    :param key: the row id (``1a``...).
    :param what: what is measured.
    :param project: this project's figure (text).
    :param baseline: the baseline's figure (text), measured in the same run.
    :param ratio: project ÷ baseline, or ``None`` when it means nothing.
    :param goal: the goal, as text.
    :param met: whether the goal is met (``None``: no goal for this line).
    :param note: how it was measured, what bounds it.
    """

    key: str
    what: str
    project: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None
    note: str = ""


@dataclass
class BenchResult:
    """What one benchmark returns: rows for the table and notes printed under it."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def prepare_environment(scratch: Path) -> None:
    """Environment for the harness and every process it starts (before Airflow is imported)."""
    home = scratch / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(scratch / "dags")
    os.environ["PYWREN_DEFERRABLE_RUNNER_DIR"] = str(scratch / "runners")
    # Lithops' localhost backend copies its own package to <TMPDIR>/lithops-<user>/lithops
    # for every new executor process, replacing the tree under the running workers of
    # any other localhost job (they then die with ModuleNotFoundError and never write a
    # status). A private TMPDIR keeps other people's test runs and these benchmarks out
    # of each other's way; jobs that run side by side here get one each (private_tmpdir).
    os.environ["TMPDIR"] = private_tmpdir(scratch, "harness")
    # The payload module (benchmarks.payloads) must be importable by the detached runner
    # and by Lithops' worker processes.
    paths = [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def private_tmpdir(scratch: Path, label: str) -> str:
    """A TMPDIR of its own for the Lithops processes of one job (see prepare_environment)."""
    path = scratch / f"tmp-{label}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def unique_bucket(label: str) -> str:
    """A fresh, valid bucket name (moto's LIST cost grows with the bucket's size, so
    every measurement gets its own bucket)."""
    return f"bench-{label}-{uuid.uuid4().hex[:10]}"


def lithops_config(endpoint: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    """The Lithops config the embedded Connection gives (localhost compute, S3 on 127.0.0.1)."""
    from pywren_deferrable.config import build_lithops_config
    from pywren_deferrable.config_sections import deep_merge
    from pywren_deferrable.embedded import embedded_connection

    conn = embedded_connection(endpoint, bucket)
    extra = deep_merge(conn["extra"], {"lithops": {"log_level": "WARNING"}})
    return build_lithops_config(extra, login=conn["login"], password=conn["password"], overrides=overrides)


def connection_env(endpoint: str, bucket: str) -> dict[str, str]:
    """``AIRFLOW_CONN_LITHOPS_DEFAULT`` for the embedded Connection on ``endpoint``."""
    from pywren_deferrable.embedded import embedded_connection

    conn = embedded_connection(endpoint, bucket)
    conn["extra"]["lithops"]["log_level"] = "WARNING"
    return {"AIRFLOW_CONN_LITHOPS_DEFAULT": json.dumps(conn)}


def percentile(values: list[float], pct: float) -> float:
    """The ``pct``-th percentile (linear interpolation); ``values`` must not be empty."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def loadavg() -> float:
    """The 1-minute load average (this machine has 2 cores; others run tests on it)."""
    with open("/proc/loadavg", encoding="ascii") as handle:
        return float(handle.read().split()[0])


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    """Cores, Python, the versions that matter, date, load."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "lithops": version("lithops"),
        "aiobotocore": version("aiobotocore"),
        "botocore": version("botocore"),
        "moto": version("moto"),
        "aiohttp": version("aiohttp"),
    }


def kill_process_group(pid: int | None) -> None:
    """Kill a detached runner (it leads its own session) if it is still alive."""
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class Context:
    """Shared state of one ``python -m benchmarks`` run.

    :param quick: smaller sizes (smoke test).
    """

    def __init__(self, *, quick: bool) -> None:
        self.quick = quick
        self.scratch = Path(tempfile.mkdtemp(prefix="pywren-bench-"))
        prepare_environment(self.scratch)
        self._moto: Any = None
        self._template: Any = None
        self._forkserver: Any = None
        self._cleanups: list[Callable[[], None]] = []

    # -- the S3 endpoint -------------------------------------------------------------
    def moto(self) -> Any:
        """The moto S3 server shared by the benchmarks that use moto (one process)."""
        if self._moto is None:
            from benchmarks.moto_server import MotoServer

            self._moto = MotoServer().start()
        return self._moto

    def status_template(self) -> Any:
        """What a real Lithops run writes (captured once per run from a 3-call map)."""
        if self._template is None:
            from benchmarks.lithops_layout import capture_template

            self._template = capture_template(self)
        return self._template

    def forkserver(self) -> Any:
        """A multiprocessing context whose children are forked from a process that has
        already imported Airflow, the provider and Lithops, as Airflow 3's supervisor
        forks the task process."""
        if self._forkserver is None:
            from benchmarks.task_process import forkserver_context

            self._forkserver = forkserver_context()
        return self._forkserver

    def on_close(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        if self._forkserver is not None:
            from benchmarks.task_process import stop_forkserver

            stop_forkserver()
        if self._moto is not None:
            self._moto.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)


@contextlib.contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t:`` ... ``t["wall"]``, ``t["cpu"]`` (this process)."""
    box: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield box
    finally:
        box["wall"] = time.perf_counter() - wall
        box["cpu"] = time.process_time() - cpu


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"
