"""A RabbitMQ broker on 127.0.0.1 (Debian's ``rabbitmq-server``), a node of its own.

Lithops injects a ``rabbitmq`` parameter (a pika connection to the config's
``rabbitmq.amqp_url``) into functions that take one; the test that runs such a function
needs a real broker. Each broker is a private node (its own name, ports, data and log
directories), so it neither needs nor disturbs a system one. A missing ``rabbitmq-server``
skips the test locally and fails it under CI (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from storage_servers import missing_server, start_server, stop_server, wait_for_port

from pywren_deferrable.embedded import free_port

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


@dataclass
class RabbitMQServer:
    """One private RabbitMQ node; ``amqp_url`` is what Lithops' config takes."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    home: str = ""

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self, timeout: float = 120.0) -> RabbitMQServer:
        binary = RABBITMQ_SERVER if os.path.exists(RABBITMQ_SERVER) else shutil.which("rabbitmq-server")
        if binary is None:
            missing_server("rabbitmq-server", "apt-get install -y rabbitmq-server (.ci/run does it as root)")
        self.port = self.port or free_port()
        self.home = tempfile.mkdtemp(prefix="rabbitmq-")
        Path(self.home, "enabled_plugins").write_text("[].\n")
        name = f"pywren{self.port}@localhost"
        env = dict(
            os.environ,
            RABBITMQ_NODENAME=name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(free_port()),
            RABBITMQ_MNESIA_BASE=f"{self.home}/mnesia",
            RABBITMQ_LOG_BASE=f"{self.home}/log",
            RABBITMQ_ENABLED_PLUGINS_FILE=f"{self.home}/enabled_plugins",
            RABBITMQ_PID_FILE=f"{self.home}/pid",
            RABBITMQ_CONFIG_FILE=f"{self.home}/rabbitmq",
        )
        self.process = start_server([str(binary)], "rabbitmq-server", env=env, start_new_session=True)
        wait_for_port(self.port, self.process, "rabbitmq-server", timeout=timeout)
        self._wait_until_it_answers(time.monotonic() + timeout)
        return self

    def _wait_until_it_answers(self, deadline: float) -> None:
        """The port opens before the broker accepts AMQP logins."""
        import pika

        while True:
            try:
                pika.BlockingConnection(pika.URLParameters(self.amqp_url)).close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            # rabbitmq-server is a shell script over an Erlang VM: stop its whole session.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        stop_server(self.process)
        shutil.rmtree(self.home, ignore_errors=True)
