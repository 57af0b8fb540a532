"""Real Airflow 3 components on 127.0.0.1 for the end-to-end tests, and a pausable TCP proxy.

:class:`AirflowCluster` runs ``airflow api-server`` (public REST API + Execution API),
``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and any number of
``airflow triggerer`` processes against one SQLite metadata DB in a temporary
``AIRFLOW_HOME``. Every component is a process-group leader, so stopping or killing it
takes its children along (LocalExecutor workers, serve-logs servers, trigger runners).
It talks to the REST API (``/api/v2``) for runs, task instances, XComs and logs, and
reads the metadata DB directly (read-only) for what the API does not expose.

:class:`TcpProxy` sits between every client and the S3 endpoint, so a test can make the
endpoint unreachable for a while (refused connections, open ones reset) and bring it
back on the same port without losing the server's data.

Nothing here imports Airflow: the test process stays a plain HTTP/SQLite client.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from pywren_deferrable.embedded import free_port

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
RUNNER_MODULE = "pywren_deferrable.runner"


class ClusterError(RuntimeError):
    """A component did not start, or a run did not get where it should."""


@dataclass
class Component:
    """One running Airflow component (a process-group leader)."""

    name: str
    args: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"


def _signal_tree(pid: int, sig: int, extra: list[psutil.Process] | None = None) -> list[psutil.Process]:
    """Send ``sig`` to ``pid``'s process group and to every descendant (which may have
    left the group); return the processes signalled."""
    procs: list[psutil.Process] = list(extra or [])
    with contextlib.suppress(psutil.Error):
        procs += psutil.Process(pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
    return procs


class AirflowCluster:
    """Airflow 3 components in a private ``AIRFLOW_HOME``, all on 127.0.0.1.

    :param home: the ``AIRFLOW_HOME`` (created; holds airflow.db, logs, component logs).
    :param bundles: DAG bundle name -> folder; each becomes a ``LocalDagBundle``.
    :param env: extra environment for every component (``AIRFLOW_CONN_*``...).
    :param parallelism: LocalExecutor slots.
    :param pycache: where the components keep compiled modules (default: in ``home``).
    """

    def __init__(
        self,
        home: Path,
        bundles: dict[str, Path],
        env: dict[str, str] | None = None,
        parallelism: int = 2,
        pycache: Path | None = None,
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "component-logs").mkdir(exist_ok=True)
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.db_path = self.home / "airflow.db"
        self.runner_dir = self.home / "runners"
        (self.home / "tmp").mkdir(exist_ok=True)
        self.components: dict[str, Component] = {}
        self.timings: dict[str, float] = {}
        self._token: str | None = None
        # Generous: a loaded CI machine answers slowly; this bounds a hang, it measures nothing.
        self._client = httpx.Client(base_url=self.base_url, timeout=120)
        bundle_list = [
            {
                "name": name,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path), "refresh_interval": 0},
            }
            for name, path in bundles.items()
        ]
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        # Every component imports Airflow (seconds of CPU each): with bytecode writes off
        # (PYTHONDONTWRITEBYTECODE), each would compile it again. A private bytecode cache,
        # filled by `db migrate`, lets the components start from compiled modules.
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        base["PYTHONPYCACHEPREFIX"] = str(pycache or self.home / "pycache")
        self.env: dict[str, str] = {
            **base,
            "AIRFLOW_HOME": str(self.home),
            # Lithops' localhost backend keeps a copy of itself under the temp dir, which
            # every new executor process replaces: a private one keeps other sessions on
            # this machine from pulling it from under our jobs (see the report).
            "TMPDIR": str(self.home / "tmp"),
            "PYWREN_DEFERRABLE_RUNNER_DIR": str(self.runner_dir),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow.utils.net.get_host_ip_address",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundle_list),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            # The task supervisor notices its task process exited within this many
            # seconds. At the default (5) a trigger that fires within seconds of the
            # deferral can resume the task before the scheduler has seen the deferral's
            # exit, and Airflow 3.3.2 then fails the task ("finished with state success,
            # but the task instance's state attribute is queued", apache/airflow#67287).
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            # A dead triggerer's triggers go to a live one after this many seconds.
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            **(env or {}),
        }

    # -- processes ----------------------------------------------------------------------
    def migrate(self) -> None:
        """Create the metadata DB."""
        done = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise ClusterError(f"airflow db migrate failed:\n{done.stderr[-3000:]}")

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Component:
        """Start ``airflow ARGS`` as component ``name`` (say ``triggerer-2``)."""
        if name in self.components and self.components[name].alive():
            raise ClusterError(f"{name} is already running")
        log_path = self.home / "component-logs" / f"{name}.log"
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [AIRFLOW, *args],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=self.home,
                start_new_session=True,
            )
        self.components[name] = Component(name, list(args), process, log_path, dict(env or {}))
        return self.components[name]

    def start_api_server(self) -> Component:
        return self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))

    def start_triggerer(self, name: str = "triggerer") -> Component:
        return self.start(name, "triggerer", "--skip-serve-logs")

    BASE_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

    def start_all(self) -> None:
        """api-server, scheduler, dag-processor and one triggerer."""
        self.start_api_server()
        # No serve-logs servers (they listen on every interface): every component shares
        # this machine's AIRFLOW_HOME/logs, which the api-server reads directly.
        self.start("scheduler", "scheduler", "--skip-serve-logs")
        self.start("dag-processor", "dag-processor")
        self.start_triggerer()

    def stop(self, *names: str, timeout: float = 20.0) -> None:
        """SIGTERM the components' process groups (all at once), SIGKILL what is left
        after ``timeout``."""
        targets = [self.components[name] for name in names if name in self.components]
        trees = {c.name: _signal_tree(c.pid, signal.SIGTERM) for c in targets}
        give_up = time.monotonic() + timeout
        for component in targets:
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(max(0.0, give_up - time.monotonic()))
        for component in targets:
            leftovers = [p for p in trees[component.name] if p.is_running()]
            _, alive = psutil.wait_procs(leftovers, timeout=1)
            _signal_tree(component.pid, signal.SIGKILL, alive)
            component.process.wait()

    def kill(self, name: str) -> None:
        """``kill -9`` the component and everything it started."""
        component = self.components[name]
        _signal_tree(component.pid, signal.SIGKILL)
        component.process.wait()

    def restart(self, name: str) -> Component:
        """Stop ``name`` and start it again with the same arguments."""
        old = self.components[name]
        self.stop(name)
        return self.start(name, *old.args, env=old.extra_env)

    def runner_processes(self) -> list[psutil.Process]:
        """The detached Lithops runners (and their workers) started for our tasks."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if RUNNER_MODULE in cmdline and any(str(self.runner_dir) in arg for arg in cmdline):
                found.append(proc)
        return found

    def component_pids(self) -> set[int]:
        """Every process of every running component (their whole trees)."""
        pids = set()
        for component in self.components.values():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(component.pid)
                pids.add(proc.pid)
                pids.update(child.pid for child in proc.children(recursive=True))
        return pids

    def executor_workers(self) -> list[psutil.Process]:
        """The scheduler's LocalExecutor worker processes (titled ``... LocalExecutor: <what>``)."""
        scheduler = psutil.Process(self.components["scheduler"].pid)
        return [
            proc for proc in scheduler.children() if any("LocalExecutor" in part for part in proc.cmdline())
        ]

    def stop_all(self) -> None:
        """Stop every component and every Lithops runner they started."""
        try:
            self.stop(*self.components, timeout=15)
        finally:
            for runner in self.runner_processes():
                _signal_tree(runner.pid, signal.SIGKILL)
            self._client.close()

    def check_alive(self) -> None:
        for component in self.components.values():
            if not component.alive() and component.process.returncode not in (-9, -15, 0):
                raise ClusterError(
                    f"{component.name} exited with {component.process.returncode}:\n{component.log_tail()}"
                )

    # -- readiness ----------------------------------------------------------------------
    def wait_ready(self, dag_ids: list[str], timeout: float = 120.0) -> None:
        """Wait until the API answers, every component is healthy and ``dag_ids`` are parsed."""
        give_up = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < give_up:
            for component in self.components.values():
                if not component.alive():
                    raise ClusterError(f"{component.name} exited:\n{component.log_tail()}")
            try:
                health = self._client.get("/api/v2/monitor/health").json()
                last = health
                healthy = all(
                    (health.get(part) or {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                )
                if healthy:
                    known = {d["dag_id"] for d in self.get("/api/v2/dags", params={"limit": 100})["dags"]}
                    errors = self.get("/api/v2/importErrors")["import_errors"]
                    last = {"health": health, "dags": sorted(known), "import_errors": errors}
                    if set(dag_ids) <= known:
                        return
            except (httpx.HTTPError, ValueError) as err:
                last = repr(err)
            time.sleep(0.5)
        raise ClusterError(f"cluster not ready after {timeout}s; last: {last}")

    # -- REST API -----------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        if self._token is None:
            response = self._client.get("/auth/token")
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = self._client.request(method, path, headers={**self._auth(), **(headers or {})}, **kwargs)
        if response.status_code >= 400:
            raise ClusterError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a DAG run; return its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        return str(self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body).json()["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def task_instances(self, **params: Any) -> list[dict[str, Any]]:
        """Task instances of every DAG run (``state=...`` filters)."""
        found = self.get("/api/v2/dags/~/dagRuns/~/taskInstances", params={"limit": 100, **params})
        return list(found["task_instances"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.get(path, params={"deserialize": True, "stringify": False})["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log as the UI shows it (the worker's and the trigger's lines), as text."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self.get(path, params={"full_content": True}, headers={"Accept": "application/json"})
        lines = []
        for entry in content.get("content") or []:
            if isinstance(entry, dict):
                extra = {k: v for k, v in entry.items() if k not in ("timestamp", "event", "level", "logger")}
                lines.append(
                    " ".join(
                        str(x)
                        for x in (entry.get("level", ""), entry.get("logger", ""), entry.get("event", ""))
                    )
                    + (f" {extra}" if extra else "")
                )
            else:
                lines.append(str(entry))
        return "\n".join(lines)

    def trigger_logs(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> dict[int, str]:
        """The trigger's log files of a task try, by triggerer job id (read from disk)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        prefix = f"attempt={try_number}.log.trigger."
        found = {}
        for path in folder.glob(f"{prefix}*.log"):
            job_id = path.name[len(prefix) : -len(".log")]
            if job_id.isdigit():
                found[int(job_id)] = path.read_text(errors="replace")
        return found

    def scheduler_complaints(self, ti_id: str) -> list[str]:
        """The scheduler's log lines that say why it changed this task instance's state
        behind the task's back (state mismatches, zombies...)."""
        component = self.components.get("scheduler")
        if component is None:
            return []
        lines = component.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if ti_id in line and ("error" in line or "state attribute" in line)]

    def fail_unfinished_runs(self) -> list[str]:
        """Mark every queued or running DAG run failed (after a test that did not finish its
        runs), and kill the Lithops runners of their jobs; return the runs' ids."""
        found = self.get("/api/v2/dags/~/dagRuns", params={"state": ["queued", "running"], "limit": 100})
        for run in found["dag_runs"]:
            path = f"/api/v2/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}"
            self.request("PATCH", path, json={"state": "failed"})
        for runner in self.runner_processes():
            _signal_tree(runner.pid, signal.SIGKILL)
        return [run["dag_run_id"] for run in found["dag_runs"]]

    def wait_for(self, what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
        """Call ``check()`` until it returns something truthy; fail after ``timeout``."""
        give_up = time.monotonic() + timeout
        last = None
        while time.monotonic() < give_up:
            self.check_alive()
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise ClusterError(f"timed out after {timeout}s waiting for {what}")

    def wait_for_ti_state(
        self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 120.0
    ) -> dict[str, Any]:
        seen: list[str] = []

        def check() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id)
            if not seen or seen[-1] != ti["state"]:
                seen.append(ti["state"])
            if ti["state"] in states:
                return ti
            if ti["state"] in TERMINAL_TI_STATES:
                raise ClusterError(f"{task_id} ended {ti['state']} (states seen {seen}), wanted {states}")
            return None

        return dict(self.wait_for(f"{dag_id}/{task_id} in {states} (seen {seen})", check, timeout))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180.0) -> str:
        """Wait until the run ends; return its state."""
        run = self.wait_for(
            f"{dag_id} run {run_id} to end",
            lambda: (r := self.dag_run(dag_id, run_id))["state"] in TERMINAL_RUN_STATES and r,
            timeout,
        )
        return str(run["state"])

    # -- metadata DB (read-only) --------------------------------------------------------
    def db_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)) as db:
            return list(db.execute(sql, params).fetchall())

    def alive_triggerers(self, within: float = 10.0) -> list[int]:
        """Ids of TriggererJobs that heartbeat within ``within`` seconds."""
        rows = self.db_rows(
            "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' "
            "AND latest_heartbeat > datetime('now', ?)",
            f"-{within} seconds",
        )
        return [int(r[0]) for r in rows]


@contextlib.contextmanager
def running_cluster(cluster: AirflowCluster) -> Iterator[AirflowCluster]:
    """Start every component; stop them (and their runners) however the block ends."""
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream_port`` that can play dead.

    :meth:`pause` closes the listening socket (new connections are refused) and resets
    every open connection; :meth:`resume` listens again on the same port.
    """

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        give_up = time.monotonic() + 10
        while True:
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > give_up:
                    listener.close()
                    raise
                time.sleep(0.2)
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by pause() or stop()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def pause(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            # RST, not FIN: like a server that went away.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self._close(sock)

    def resume(self) -> None:
        """Listen again on the same port."""
        if self._listener is None:
            self._listen()

    @property
    def paused(self) -> bool:
        return self._listener is None

    def stop(self) -> None:
        self.pause()
