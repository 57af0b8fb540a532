"""`make airflow`: the example DAGs in a real Airflow UI, on the embedded default.

Starts a real S3 endpoint on 127.0.0.1 (moto's server) with a bucket, sets the
``lithops_default`` Connection to it (Lithops' localhost compute), migrates a fresh
metadata DB, and starts Airflow's components (api-server, scheduler with the
LocalExecutor, dag-processor, triggerer) each in a process group of its own, with the
example DAGs loaded. Prints the UI's URL and login once the UI answers, and on Ctrl-C
(or SIGTERM) stops every component, the Lithops job runners they started, and the S3
endpoint, then exits 0.

Components are started one by one rather than by ``airflow standalone``, which forces
the SimpleAuthManager: this way any ``AIRFLOW__*`` setting in the caller's environment
wins (another auth manager, another port...), and the end-to-end test of the job tab runs
this very command with an auth manager that has per-DAG permissions.

Options: ``--port`` (default 8080, or a free port if taken), ``--home`` (the
AIRFLOW_HOME; default a new temporary folder), ``--dags FOLDER`` (repeatable; default
``example_dags``), ``--user NAME`` (default ``admin``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
RUNNER_MODULE = "pywren_deferrable.runner"


class Stop(Exception):
    """Ctrl-C or SIGTERM."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def _port(wanted: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            from pywren_deferrable.embedded import free_port

            return free_port()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _runners(runner_dir: Path) -> list[int]:
    """Pids of the detached Lithops runners our tasks started (their own sessions)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if RUNNER_MODULE in cmdline and any(str(runner_dir) in arg for arg in cmdline):
            found.append(proc.pid)
    return found


def stop_all(processes: dict[str, subprocess.Popen[bytes]], runner_dir: Path, grace: float = 20.0) -> None:
    """SIGTERM every component's process group, SIGKILL what is left after ``grace``."""
    for process in processes.values():
        _signal_group(process, signal.SIGTERM)
    give_up = time.monotonic() + grace
    for process in processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, give_up - time.monotonic()))
    for process in processes.values():
        _signal_group(process, signal.SIGKILL)  # the group's leftovers, if any
        process.wait()
    for pid in _runners(runner_dir):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def wait_ready(url: str, processes: dict[str, subprocess.Popen[bytes]], home: Path, timeout: float) -> None:
    """Until the UI answers and every component reports healthy."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        for name, process in processes.items():
            if process.poll() is not None:
                log = (home / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow {name} exited with {process.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as response:
                health = json.load(response)
            if all(
                (health.get(p) or {}).get("status") == "healthy"
                for p in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            ):
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"Airflow did not become healthy within {timeout}s (logs in {home / 'logs'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--dags", type=Path, action="append", default=None)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    from pywren_deferrable.embedded import LocalS3Server, embedded_connection_env

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    home = (args.home or Path(tempfile.mkdtemp(prefix="pywren-airflow-"))).resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    dags = [d.resolve() for d in (args.dags or [ROOT / "example_dags"])]
    port = _port(args.port)
    url = f"http://127.0.0.1:{port}"
    runner_dir = home / "runners"
    processes: dict[str, subprocess.Popen[bytes]] = {}
    server = LocalS3Server()
    try:
        server.start()
        bucket = server.create_bucket("pywren-airflow")
        password_file = home / "simple_auth_manager_passwords.json"
        if not password_file.exists():
            password_file.write_text(json.dumps({args.user: secrets.token_urlsafe(12)}))
        password = json.loads(password_file.read_text()).get(args.user, "(see the auth manager)")
        bundles = [
            {
                "name": f"dags{i}" if i else "examples",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder), "refresh_interval": 0},
            }
            for i, folder in enumerate(dags)
        ]
        # The caller's AIRFLOW__* settings win over these defaults.
        defaults = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{args.user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            # See tests/e2e/airflow_cluster.py: a quick deferral must not race the scheduler.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        }
        env = {
            **defaults,
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONN_LITHOPS_DEFAULT": embedded_connection_env(server.endpoint, bucket),
            "PYWREN_DEFERRABLE_RUNNER_DIR": str(runner_dir),
            "TMPDIR": str(home / "tmp"),  # Lithops' localhost files, private to this Airflow
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # The example DAGs' payload modules, for the dag-processor, tasks and runners.
            "PYTHONPATH": os.pathsep.join([*map(str, dags), os.environ.get("PYTHONPATH", "")]),
        }
        print(f"S3 endpoint {server.endpoint} (bucket {bucket}); AIRFLOW_HOME {home}", flush=True)
        print("Migrating the metadata DB...", flush=True)
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL, cwd=home
        )
        for name, command in COMPONENTS.items():
            with open(home / "logs" / f"{name}.log", "ab") as log:
                processes[name] = subprocess.Popen(
                    [str(BIN / "airflow"), *command],
                    env=env,
                    cwd=home,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches us only: we stop them in order
                )
        print(f"Starting Airflow (component logs in {home / 'logs'})...", flush=True)
        wait_ready(url, processes, home, args.ready_timeout)
        print(f"\nAirflow UI: {url}\nLogin: {args.user} / {password}", flush=True)
        print(
            "Open a task of a pywren DAG, then its 'Lithops job' tab. Ctrl-C stops everything.\n", flush=True
        )
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"airflow {name} exited with {process.returncode} (see {home / 'logs'})"
                    )
            time.sleep(1)
    except Stop as why:
        print(f"\n{why}: stopping Airflow...", flush=True)
        return 0
    finally:
        # Ctrl-C during the shutdown must not leave half of it undone.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(processes, runner_dir)
        server.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
