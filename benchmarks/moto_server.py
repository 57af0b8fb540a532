"""moto's S3 server, started exactly as ``python -m moto.server`` starts it, plus a bulk loader.

Uploading the 20,000 objects of a 10,000-call job through moto's HTTP API takes minutes
(~130 PUT/s on this machine), so the benchmarks that need a large *finished* job put its
objects straight into moto's in-memory backend through a command on this process's
stdin. Every request the measured code sends still goes over HTTP to the same moto
server (werkzeug ``run_simple``, threaded, moto's request handler), like the embedded
default's :class:`~pywren_deferrable.embedded.LocalS3Server`.

Protocol (one line each): ``LOAD <bucket> <pickle file of [(key, bytes), ...]>`` answers
``OK <count>``; ``PING`` answers ``PONG``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from pywren_deferrable.embedded import LocalS3Server, free_port, stop_process


def _load(bucket: str, path: str) -> int:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    with open(path, "rb") as handle:
        objects: list[tuple[str, bytes]] = pickle.load(handle)
    for key, body in objects:
        backend.put_object(bucket, key, body, disable_notification=True)
    return len(objects)


def _commands() -> None:
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "LOAD":
                reply = f"OK {_load(parts[1], parts[2])}"
            elif parts[0] == "PING":
                reply = "PONG"
            else:
                reply = f"ERR unknown command {parts[0]}"
        except Exception as err:
            reply = f"ERR {type(err).__name__}: {err}"
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()
    os._exit(0)  # stdin closed: the harness is gone


def main() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    threading.Thread(target=_commands, daemon=True).start()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


class MotoServer(LocalS3Server):
    """The embedded default's moto server, started so that it can also be bulk-loaded
    (objects put straight into its backend through a command pipe, not over HTTP)."""

    def __init__(self) -> None:
        super().__init__(port=free_port())
        self.process: subprocess.Popen[str] | None = None  # type: ignore[assignment]
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> MotoServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.moto_server", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        give_up = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return self
            except (TimeoutError, urllib.error.URLError, OSError):
                if self.process.poll() is not None:
                    raise RuntimeError(f"moto exited with code {self.process.returncode}") from None
                if time.monotonic() > give_up:
                    self.stop()
                    raise RuntimeError(f"moto did not answer within {timeout}s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        stop_process(self.process)

    def load(self, bucket: str, objects: list[tuple[str, bytes]], scratch_dir: str) -> None:
        """Put ``objects`` into ``bucket`` directly in moto's backend (not over HTTP)."""
        assert self.process is not None and self.process.stdin and self.process.stdout
        path = os.path.join(scratch_dir, f"load-{time.monotonic_ns()}.pickle")
        with open(path, "wb") as handle:
            pickle.dump(objects, handle, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self._lock:
                self.process.stdin.write(f"LOAD {bucket} {path}\n")
                self.process.stdin.flush()
                reply = self.process.stdout.readline().strip()
        finally:
            os.remove(path)
        if reply != f"OK {len(objects)}":
            raise RuntimeError(f"moto bulk load failed: {reply!r}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        return process_cpu_seconds(self.pid)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


if __name__ == "__main__":
    main()
