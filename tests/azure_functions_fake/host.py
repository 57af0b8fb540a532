"""An Azure Functions stand-in for Lithops' ``azure_functions`` backend (trigger ``pub/sub``).

Lithops invokes a function by sending its payload (base64 JSON) to the function app's
input Storage Queue (``lithops-worker-<hash>-in-trigger``), and reads the runtime metadata
back from its output queue (``...-out-result``). Azurite serves those queues and the job's
blobs (:class:`storage_servers.AzuriteServer` with ``queue=True``, reached by Lithops as
``https://<account>.queue.core.windows.net`` through the test proxy). This module is the
other half, the Functions host with the queue trigger Lithops' ``function.json`` binds,
behaving as the host's queue listener documents it
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger):

* it polls the input queue and takes a message invisible for a lease it renews while the
  function runs; a message is deleted only once the function succeeded;
* a failed run (exception, exit, timeout) puts the message back, visible again after
  ``visibility_timeout`` (host.json's ``queues.visibilityTimeout``, 5 s in Lithops'),
  and its dequeue count grows; the failure of its ``max_dequeue_count``-th run (5) moves it
  to ``<queue>-poison``, as does receiving it past that count (a host that died mid-run);
* at most ``concurrency_limit`` invocations run at once (instances x batch size);
* a run longer than ``function_timeout`` (host.json's ``functionTimeout``) is killed;
* the body is base64-decoded (the binding's default ``messageEncoding``), and what the
  function sets on its output binding is sent, base64-encoded, to the output queue.

Each invocation is a process of its own (:mod:`.worker`, running Lithops' real entry point
``main_queue``) with a private temp dir as cwd, ``HOME`` and ``TMPDIR``, as an instance
has. What is not emulated: the ``az``/``func`` deployment (:meth:`FakeAzureFunctions.deploy`
presents an account where the runtime is deployed instead), the ``https`` trigger,
scale-out delays and billing.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER = str(Path(__file__).with_name("worker.py"))
# How long an invocation may take to start (imports) before the function timeout runs.
INIT_TIMEOUT = 120.0


@dataclass
class Invocation:
    """One run of the function for one dequeue of a message."""

    app: str
    message_id: str
    dequeue_count: int
    params: dict[str, Any]
    start: float
    end: float | None = None
    status: str = "running"  # succeeded | failed | timeout
    error: str = ""
    pid: int | None = None

    @property
    def call_ids(self) -> list[str]:
        return list(self.params.get("call_ids") or [])


@dataclass
class FunctionApp:
    name: str
    in_queue: str
    out_queue: str
    poisoned: list[str] = field(default_factory=list)  # message ids moved to the poison queue


class FakeAzureFunctions:
    """The Functions host for the apps :meth:`deploy` (or :meth:`add_app`) registers.

    :param azurite: a started ``AzuriteServer(queue=True)``: its queue service is read
        directly (127.0.0.1, as the platform's own side would), not through the proxy.
    :param concurrency_limit: invocations running at once, over all apps.
    :param function_timeout: seconds an invocation may run (from the entry point's call).
    :param visibility_timeout: seconds a failed message stays invisible before its retry.
    :param max_dequeue_count: runs of one message before it is poisoned.
    :param env: extra environment of the invocations (the proxy and CA to reach storage).
    """

    def __init__(
        self,
        azurite: Any,
        *,
        workdir: str | None = None,
        concurrency_limit: int = 100,
        function_timeout: float = 600.0,
        visibility_timeout: float = 5.0,
        max_dequeue_count: int = 5,
        lease: float = 30.0,
        poll_interval: float = 0.2,
        env: dict[str, str] | None = None,
    ) -> None:
        self.azurite = azurite
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="fake-azfunc-")
        self.concurrency_limit = concurrency_limit
        self.function_timeout = function_timeout
        self.visibility_timeout = visibility_timeout
        self.max_dequeue_count = max_dequeue_count
        self.lease = lease
        self.poll_interval = poll_interval
        self.env = dict(env or {})
        self.apps: dict[str, FunctionApp] = {}
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()
        self._running = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._service: Any = None

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> FakeAzureFunctions:
        from azure.storage.queue import QueueServiceClient

        self._service = QueueServiceClient(
            self.azurite.queue_direct_url,
            credential={"account_name": self.azurite.account, "account_key": self.azurite.key},
            connection_verify=self.azurite.ca_bundle or True,
        )
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        for thread in self._threads:
            thread.join(30)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> FakeAzureFunctions:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- function apps --------------------------------------------------------------

    def add_app(self, name: str, in_queue: str, out_queue: str) -> FunctionApp:
        """Run the queue trigger of ``in_queue`` (the queues must exist)."""
        app = self.apps[name] = FunctionApp(name, in_queue, out_queue)
        thread = threading.Thread(target=self._listen, args=(app,), name=f"azfunc-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return app

    def deploy(self, lithops_config: dict[str, Any]) -> dict[str, Any]:
        """Present the account of ``lithops_config`` with its runtime already deployed.

        Lithops' ``deploy_runtime`` is ``az functionapp create``, a ``config-zip`` publish
        (no ``az`` here), then its own steps, which run for real: the queues created by
        its ``_ensure_queue``, the runtime metadata asked of the deployed function through
        the queues (``_generate_runtime_meta``: Lithops' entry point answers with
        ``get_runtime_metadata()``), stored where Lithops' invoker looks for it before
        deploying (``put_runtime_meta`` under the runtime key), with the runtime timeout
        added as its ``_deploy_runtime`` does. A job then finds the runtime deployed.
        """
        from lithops.config import default_config, extract_storage_config
        from lithops.serverless.backends.azure_functions import config as az_config
        from lithops.serverless.backends.azure_functions.azure_functions import AzureFunctionAppBackend
        from lithops.storage import InternalStorage
        from lithops.version import __version__

        config = default_config(config_data=copy.deepcopy(lithops_config), load_storage_config=True)
        storage = InternalStorage(extract_storage_config(config))
        backend = AzureFunctionAppBackend(config["azure_functions"], storage)
        info = backend.get_runtime_info()
        name, memory = info["runtime_name"], info["runtime_memory"]
        function_name = backend._format_function_name(name)
        in_queue = backend._format_queue_name(function_name, az_config.IN_QUEUE)
        out_queue = backend._format_queue_name(function_name, az_config.OUT_QUEUE)
        backend._ensure_queue(in_queue)
        backend._ensure_queue(out_queue)
        if function_name not in self.apps:
            self.add_app(function_name, in_queue, out_queue)
        meta: dict[str, Any] = backend._generate_runtime_meta(name, memory)
        meta["runtime_timeout"] = info["runtime_timeout"]
        storage.put_runtime_meta(backend.get_runtime_key(name, memory, __version__), meta)
        return meta

    # --- what tests look at ---------------------------------------------------------

    def invocations_of(self, job_id: str) -> list[Invocation]:
        with self._lock:
            return [i for i in self.invocations if i.params.get("job_id") == job_id]

    def running(self) -> list[Invocation]:
        with self._lock:
            return [i for i in self.invocations if i.end is None]

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until no invocation runs (a call's status is written before its process
        exits and its message is deleted)."""
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.running())} invocation(s) still running after {timeout:.0f}s")
            time.sleep(0.05)

    def queue_client(self, queue: str) -> Any:
        return self._service.get_queue_client(queue)

    # --- the queue listener ---------------------------------------------------------

    def _listen(self, app: FunctionApp) -> None:
        queue = self.queue_client(app.in_queue)
        while not self._stopping.is_set():
            with self._lock:
                free = self.concurrency_limit - self._running
            if free <= 0:
                time.sleep(self.poll_interval)
                continue
            try:
                messages = list(
                    queue.receive_messages(
                        messages_per_page=min(free, 32),
                        max_messages=min(free, 32),
                        visibility_timeout=int(self.lease),
                    )
                )
            except Exception:  # the queue deleted, Azurite restarting: keep listening
                time.sleep(self.poll_interval)
                continue
            for message in messages:
                if message.dequeue_count > self.max_dequeue_count:
                    self._poison(app, queue, message)
                    continue
                with self._lock:
                    self._running += 1
                threading.Thread(
                    target=self._invoke, args=(app, queue, message), name=f"inv-{message.id[:8]}", daemon=True
                ).start()
            if not messages:
                time.sleep(self.poll_interval)

    def _poison(self, app: FunctionApp, queue: Any, message: Any, receipt: str | None = None) -> None:
        poison = self.queue_client(f"{app.in_queue}-poison")
        with contextlib.suppress(Exception):
            poison.create_queue()
        poison.send_message(message.content)
        queue.delete_message(message.id, receipt or message.pop_receipt)
        app.poisoned.append(message.id)

    def _invoke(self, app: FunctionApp, queue: Any, message: Any) -> None:
        try:
            body = base64.b64decode(message.content).decode()
        except ValueError:
            body = str(message.content)  # not base64: the binding passes it as is
        try:
            params = json.loads(body)
        except ValueError:
            params = {}
        invocation = Invocation(app.name, message.id, message.dequeue_count, params, time.time())
        with self._lock:
            self.invocations.append(invocation)
        pop_receipt = message.pop_receipt
        workdir = tempfile.mkdtemp(prefix=f"inv-{message.id[:8]}-", dir=self.workdir)
        try:
            ok, out, error = self._run(invocation, workdir, body, queue, message)
            if ok and out is not None:
                self.queue_client(app.out_queue).send_message(base64.b64encode(out.encode()).decode())
            if ok:
                invocation.status = "succeeded"
                queue.delete_message(message.id, self._receipt(message, pop_receipt))
            else:
                invocation.status = "timeout" if error.startswith("Timeout") else "failed"
                invocation.error = error
                receipt = self._receipt(message, pop_receipt)
                if message.dequeue_count >= self.max_dequeue_count:  # its last try: poisoned now
                    self._poison(app, queue, message, receipt)
                else:  # back in the queue, visible again after the retry delay
                    queue.update_message(message.id, receipt, visibility_timeout=int(self.visibility_timeout))
        except Exception as err:  # the host's own trouble: the lease expires, the message reappears
            invocation.status, invocation.error = "failed", f"host: {type(err).__name__}: {err}"
        finally:
            invocation.end = time.time()
            with self._lock:
                self._running -= 1
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _receipt(message: Any, fallback: str) -> str:
        return str(getattr(message, "_latest_receipt", None) or fallback)

    def _run(
        self, invocation: Invocation, workdir: str, body: str, queue: Any, message: Any
    ) -> tuple[bool, str | None, str]:
        tmp = os.path.join(workdir, "tmp")
        os.makedirs(tmp)
        with open(os.path.join(workdir, "input.json"), "w", encoding="utf-8") as handle:
            json.dump({"id": message.id, "body": body, "dequeue_count": message.dequeue_count}, handle)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "FUNCTIONS_WORKER_RUNTIME": "python",
            **self.env,
        }
        log_path = os.path.join(workdir, "log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-I", WORKER, workdir],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env=env,
                start_new_session=True,  # its whole process group goes at the timeout
            )
        invocation.pid = process.pid
        with self._lock:
            self._processes[process.pid] = process
        try:
            started = time.monotonic()
            marker = os.path.join(workdir, "run_started")
            run_from: float | None = None
            renew_at = started + self.lease / 2
            receipt = message.pop_receipt
            while process.poll() is None:
                now = time.monotonic()
                if run_from is None and (os.path.exists(marker) or now - started > INIT_TIMEOUT):
                    run_from = now
                if run_from is not None and now - run_from > self.function_timeout:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    return False, None, f"Timeout value of {self.function_timeout:.0f}s was exceeded"
                if now >= renew_at:  # the host keeps the message invisible while it runs
                    with contextlib.suppress(Exception):
                        updated = queue.update_message(
                            message.id, receipt, visibility_timeout=int(self.lease)
                        )
                        receipt = updated.pop_receipt
                        message._latest_receipt = receipt
                    renew_at = now + self.lease / 2
                if self._stopping.wait(0.05):
                    return False, None, "host stopped"
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # what it left behind goes with the instance
            try:
                with open(os.path.join(workdir, "result.json"), encoding="utf-8") as handle:
                    outcome = json.load(handle)
            except (OSError, ValueError):
                tail = Path(log_path).read_text(errors="replace")[-2000:]
                return False, None, f"the worker exited ({process.returncode}) without a result: {tail}"
            if outcome.get("ok"):
                return True, outcome.get("out"), ""
            return False, None, str(outcome.get("error"))
        finally:
            with self._lock:
                self._processes.pop(process.pid, None)
