"""Lithops' own wait, for jobs this process did not submit: the baseline of the latency and
fetch benchmarks (the seed called Lithops' ``get_result()`` on the worker).

``python -m benchmarks.lithops_waiter CONFIG_JSON`` reads one JSON command per line on
stdin: ``{"bucket", "executor_id", "job_id", "calls", "mode"}``. It builds a
``FunctionExecutor`` for that bucket and one ``ResponseFuture`` per call of the job (as
Lithops' invoker does), answers ``{"ready": t}``, then runs ``get_result(futures)`` and
answers ``{"done": t, "seconds": ..., "cpu": ..., "requests": {...}, "digest": ...}``.
No Airflow here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any


def digest(results: list[Any]) -> str:
    """A short fingerprint of a result list (the harness compares them)."""
    return hashlib.sha256(json.dumps(results).encode()).hexdigest()[:16]


def futures_for(fexec: Any, executor_id: str, job_id: str, calls: int) -> list[Any]:
    """One Lithops future per call of a job submitted elsewhere, in the Invoked state."""
    from lithops.future import ResponseFuture

    job = SimpleNamespace(
        job_id=job_id,
        job_key=f"{executor_id}-{job_id}",
        executor_id=executor_id,
        function_name="square",
        execution_timeout=3600,
        runtime_name="python",
        runtime_memory=256,
        backend="localhost",
    )
    storage_config = fexec.internal_storage.get_storage_config()
    futures = []
    for index in range(calls):
        future = ResponseFuture(f"{index:05d}", job, {}, storage_config)
        future._set_state(ResponseFuture.State.Invoked)
        futures.append(future)
    return futures


class LithopsWaiter:
    """The waiter process, driven from the harness (one command at a time)."""

    def __init__(self, config: dict[str, Any], scratch: str) -> None:
        self.config_path = f"{scratch}/waiter-config-{time.monotonic_ns()}.json"
        with open(self.config_path, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()

    def __enter__(self) -> LithopsWaiter:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.lithops_waiter", self.config_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.lines.put(line)

    def send(self, command: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            reply: dict[str, Any] = json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise TimeoutError(f"Lithops' wait did not answer within {timeout:.0f}s") from None
        return reply

    def __exit__(self, *_: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def main(config_path: str) -> None:
    import lithops

    with open(config_path, encoding="utf-8") as handle:
        base_config = json.load(handle)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        config = copy.deepcopy(base_config)
        storage = config["lithops"]["storage"]
        config[storage]["storage_bucket"] = command["bucket"]
        if command.get("endpoint"):
            config[storage]["endpoint"] = command["endpoint"]
        fexec = lithops.FunctionExecutor(config=config)
        counts: Counter[str] = Counter()

        def before_send(event_name: str = "", _counts: Counter[str] = counts, **_: Any) -> None:
            _counts[event_name.rsplit(".", 1)[-1]] += 1

        fexec.internal_storage.storage.get_client().meta.events.register("before-send.s3", before_send)
        futures = futures_for(fexec, command["executor_id"], command["job_id"], command["calls"])
        print(json.dumps({"ready": time.time()}), flush=True)
        wall, cpu = time.perf_counter(), time.process_time()
        results = fexec.get_result(futures, show_progressbar=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            json.dumps(
                {
                    "done": time.time(),
                    "seconds": wall,
                    "cpu": cpu,
                    "requests": dict(counts),
                    "digest": digest(list(results)),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1])
