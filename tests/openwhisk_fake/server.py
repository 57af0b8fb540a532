"""An Apache OpenWhisk REST API stand-in on 127.0.0.1 over HTTPS, for Lithops' ``openwhisk``
and ``ibm_cf`` compute backends, plus the IBM Cloud IAM token endpoint ``ibm_cf`` needs.

It serves what those backends call (``lithops/libs/openwhisk/client.py``):

* ``PUT/GET/DELETE /api/v1/namespaces/{ns}/packages[/{pkg}]``
* ``PUT/GET/DELETE /api/v1/namespaces/{ns}/actions/{pkg}/{action}`` (``exec.code`` is the
  base64 zip Lithops builds: its entry point as ``__main__.py`` plus its own package),
  ``GET .../actions/{pkg}/`` to list; an update without ``exec`` changes only the limits
* ``POST .../actions/{pkg}/{action}``: non-blocking invoke, ``202 {"activationId"}``;
  ``?blocking=true&result=true`` waits (at most ``blocking_wait`` s, then 202 as OpenWhisk
  does) and answers the action's result (Lithops' runtime-metadata "preinstalls" call)
* ``GET /api/v1/namespaces/{ns}/activations/{id}``: the activation record
* IBM Cloud Functions' namespaces API, ``GET/POST /api/v1/namespaces``, with IAM auth
* a separate IAM server: ``POST /identity/token`` (API key -> a signed JWT bearer token)

and answers as the service does: 401 for a bad key or token, 404 for a missing action
or package, 429 once ``concurrency_limit`` activations are in flight, and an activation
whose run outlives its action's ``limits.timeout`` is killed ("developer error").

Every activation is a process of its own, as a container is: the action's zip is unpacked
into a private temp dir (also its ``TMPDIR`` and ``HOME``: Lithops unpacks the job's
modules there, and activations sharing one race), and ``actionproxy.py`` calls the zip's
``main(params)``. So Lithops' real entry point and worker code run.

The server runs its own event loop in a thread; the test drives it with plain methods
(``down_for``, ``activations``...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import trustme
from aiohttp import web

ACTIONPROXY = str(Path(__file__).with_name("actionproxy.py"))
IAM_GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"
IAM_TOKEN_LIFETIME = 3600
# OpenWhisk answers a blocking invoke with 202 + activationId after about a minute.
DEFAULT_BLOCKING_WAIT = 60.0
# How long an activation may take to start its action (unzip, imports) before the limit runs.
INIT_TIMEOUT = 120.0
_serial = itertools.count(1)


@dataclass
class Action:
    namespace: str
    package: str
    name: str
    code: bytes
    limits: dict[str, Any]
    exec_meta: dict[str, Any]
    version: int = 1

    @property
    def timeout_s(self) -> float:
        return float(self.limits.get("timeout") or 60000) / 1000.0

    def describe(self) -> dict[str, Any]:
        return {
            "namespace": f"{self.namespace}/{self.package}",
            "name": self.name,
            "version": f"0.0.{self.version}",
            "limits": self.limits,
            "exec": {**self.exec_meta, "binary": True},
            "publish": False,
        }


@dataclass
class Activation:
    """One activation, as ``GET /activations/{id}`` reports it (plus what tests look at)."""

    activation_id: str
    namespace: str
    action: str
    params: dict[str, Any]
    start: float
    end: float | None = None
    status: str = "running"  # success | application error | developer error
    result: dict[str, Any] = field(default_factory=dict)
    logs: str = ""
    pid: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def call_ids(self) -> list[str]:
        return list(self.params.get("call_ids") or [])

    def record(self) -> dict[str, Any]:
        return {
            "activationId": self.activation_id,
            "namespace": self.namespace,
            "name": self.action,
            "start": int(self.start * 1000),
            "end": int(self.end * 1000) if self.end else 0,
            "duration": int(((self.end or time.time()) - self.start) * 1000),
            "response": {"status": self.status, "success": self.status == "success", "result": self.result},
            "logs": self.logs.splitlines()[-200:],
        }


def _unzip(code: bytes, directory: str) -> None:
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        archive.extractall(directory)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "code": uuid.uuid4().hex}, status=status)


class FakeOpenWhisk:
    """The stand-in. Use :meth:`start`/:meth:`stop` (or ``with``); ``endpoint`` is its URL.

    :param api_keys: OpenWhisk API keys (``uuid:secret``, HTTP Basic auth) -> namespace.
    :param iam_api_keys: IBM Cloud API keys that IAM exchanges for bearer tokens (ibm_cf).
    :param concurrency_limit: activations in flight per namespace before 429.
    :param workdir: where activations get their private directories.
    :param blocking_wait: how long a blocking invoke waits before answering 202.
    """

    def __init__(
        self,
        *,
        api_keys: dict[str, str] | None = None,
        iam_api_keys: set[str] | None = None,
        concurrency_limit: int = 100,
        workdir: str | None = None,
        blocking_wait: float = DEFAULT_BLOCKING_WAIT,
    ) -> None:
        self.api_keys = dict(api_keys or {})
        self.iam_api_keys = set(iam_api_keys or ())
        self.concurrency_limit = concurrency_limit
        self.blocking_wait = blocking_wait
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="fake-openwhisk-")
        self._jwt_secret = uuid.uuid4().hex  # per server: a token of another one is invalid
        self.packages: dict[tuple[str, str], dict[str, Any]] = {}
        self.actions: dict[tuple[str, str, str], Action] = {}
        self.iam_namespaces: dict[str, dict[str, Any]] = {}  # id -> IBM CF namespace
        self.activations: dict[str, Activation] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.iam_requests = 0
        self.throttled = 0
        self._down_until = 0.0
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openwhisk", daemon=True)
        self._ca = trustme.CA()
        self.ca_bundle = os.path.join(self.workdir, "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_bundle)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ssl)
        self.port = 0
        self.iam_port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._iam_runner: web.AppRunner | None = None

    # --- life cycle (called from the test's thread) ---------------------------------

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def iam_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.iam_port}"

    def _run(self, coro: Awaitable[Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> FakeOpenWhisk:
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._run(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> FakeOpenWhisk:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def down_for(self, seconds: float) -> None:
        """Take the API endpoint down now for ``seconds`` (connections refused, open ones
        dropped); running activations go on, as they would in the cloud."""
        self._run(self._go_down(seconds))

    def running(self) -> list[Activation]:
        return [a for a in list(self.activations.values()) if a.end is None]

    def finished(self) -> list[Activation]:
        return [a for a in list(self.activations.values()) if a.end is not None]

    def settle(self, timeout: float = 60.0) -> list[Activation]:
        """Wait until every activation has ended, then return them all. A call writes its
        status.json (which ends the job for Lithops and the trigger) before its process
        exits, so a job can be over while its last activations are still ending."""
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.running(), f"activations still running after {timeout}s: {self.running()}"
        return self.finished()

    def invocations_of(self, job_id: str) -> list[Activation]:
        """The activations of one Lithops job (``M000``...), by their params."""
        return [a for a in list(self.activations.values()) if a.params.get("job_id") == job_id]

    # --- the event loop side ----------------------------------------------------------

    async def _start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._middleware])
        app.router.add_route("GET", "/api/v1/namespaces", self._list_namespaces)
        app.router.add_route("POST", "/api/v1/namespaces", self._create_namespace)
        base = "/api/v1/namespaces/{ns}"
        app.router.add_route("GET", base + "/packages", self._list_packages)
        app.router.add_route("PUT", base + "/packages/{pkg}", self._put_package)
        app.router.add_route("GET", base + "/packages/{pkg}", self._get_package)
        app.router.add_route("DELETE", base + "/packages/{pkg}", self._delete_package)
        app.router.add_route("GET", base + "/actions/{pkg}/", self._list_actions)
        app.router.add_route("PUT", base + "/actions/{pkg}/{action}", self._put_action)
        app.router.add_route("GET", base + "/actions/{pkg}/{action}", self._get_action)
        app.router.add_route("DELETE", base + "/actions/{pkg}/{action}", self._delete_action)
        app.router.add_route("POST", base + "/actions/{pkg}/{action}", self._invoke)
        app.router.add_route("GET", base + "/activations/{aid}", self._get_activation)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ssl)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

        iam = web.Application()
        iam.router.add_route("POST", "/identity/token", self._iam_token)
        self._iam_runner = web.AppRunner(iam, access_log=None)
        await self._iam_runner.setup()
        iam_site = web.TCPSite(self._iam_runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await iam_site.start()
        self.iam_port = self._iam_runner.addresses[0][1]

    async def _stop(self) -> None:
        for activation_id in list(self._processes):
            self._kill(activation_id)
        for runner in (self._runner, self._iam_runner):
            if runner is not None:
                await runner.cleanup()

    async def _go_down(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self._loop.call_later(seconds, lambda: asyncio.ensure_future(self._come_up()))

    async def _come_up(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, ssl_context=self._ssl, reuse_address=True
        )
        await self._site.start()

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if time.monotonic() < self._down_until:
            # A kept-alive connection opened before the outage: drop it, as a dead host would.
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("endpoint down")
        response = await handler(request)
        self.requests.append((request.method, request.path, response.status))
        return response

    # --- auth -------------------------------------------------------------------------

    def _authorize(self, request: web.Request, namespace: str | None) -> str | web.Response:
        """The namespace the request may act on, or the 401/403 answer."""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                key = base64.b64decode(auth[6:]).decode()
            except ValueError:
                key = ""
            owned = self.api_keys.get(key)
            if owned is None:
                return _error(401, "The supplied authentication is invalid.")
            if namespace not in (None, "_", owned):
                return _error(403, "The supplied authentication is not authorized to access this resource.")
            return owned
        if auth.startswith("Bearer "):
            try:
                jwt.decode(auth[7:], self._jwt_secret, algorithms=["HS256"])
            except jwt.PyJWTError:
                return _error(401, "The supplied authentication is invalid.")
            if namespace is not None and namespace not in self.iam_namespaces:
                return _error(403, "The supplied authentication is not authorized to access this resource.")
            return namespace or ""
        return _error(401, "The resource requires authentication, which was not supplied with the request.")

    async def _iam_token(self, request: web.Request) -> web.Response:
        self.iam_requests += 1
        form = await request.post()
        key = str(form.get("apikey", ""))
        if form.get("grant_type") != IAM_GRANT_TYPE or key not in self.iam_api_keys:
            return web.json_response(
                {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."},
                status=400,
            )
        now = int(time.time())
        claims = {"iam_id": f"iam-{key[:4]}", "iat": now, "exp": now + IAM_TOKEN_LIFETIME, "n": next(_serial)}
        token = jwt.encode(claims, self._jwt_secret, algorithm="HS256")
        return web.json_response(
            {
                "access_token": token,
                "refresh_token": "not_supported",
                "token_type": "Bearer",
                "expires_in": IAM_TOKEN_LIFETIME,
                "expiration": now + IAM_TOKEN_LIFETIME,
                "scope": "ibm openid",
            }
        )

    # --- IBM Cloud Functions namespaces ------------------------------------------------

    async def _list_namespaces(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"message": "IAM authentication required"}, status=401)
        allowed = self._authorize(request, None)
        if isinstance(allowed, web.Response):
            return web.json_response({"message": "The supplied authentication is invalid."}, status=401)
        spaces = list(self.iam_namespaces.values())
        return web.json_response(
            {"namespaces": spaces, "limit": 200, "offset": 0, "total_count": len(spaces)}
        )

    async def _create_namespace(self, request: web.Request) -> web.Response:
        allowed = (
            self._authorize(request, None) if "Bearer " in request.headers.get("Authorization", "") else None
        )
        if allowed is None or isinstance(allowed, web.Response):
            return web.json_response({"message": "The supplied authentication is invalid."}, status=401)
        body = await request.json() if request.can_read_body else {}
        if not body.get("name") or not body.get("resource_group_id"):
            return web.json_response(
                {"message": "a namespace needs a 'name' and a 'resource_group_id'"}, status=400
            )
        namespace_id = str(uuid.uuid4())
        self.iam_namespaces[namespace_id] = {
            "id": namespace_id,
            "name": body["name"],
            "description": body.get("description", ""),
            "resource_group_id": body["resource_group_id"],
            "resource_plan_id": body.get("resource_plan_id"),
            "location": "local",
        }
        return web.json_response(self.iam_namespaces[namespace_id], status=201)

    # --- packages and actions -----------------------------------------------------------

    async def _list_packages(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        return web.json_response([p for (n, _), p in self.packages.items() if n == ns])

    async def _put_package(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        key = (ns, request.match_info["pkg"])
        if key in self.packages and request.query.get("overwrite", "false").lower() != "true":
            return _error(409, "resource already exists")
        self.packages[key] = {"namespace": ns, "name": key[1], "version": "0.0.1", "publish": False}
        return web.json_response(self.packages[key])

    async def _get_package(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        package = self.packages.get((ns, request.match_info["pkg"]))
        return (
            web.json_response(package) if package else _error(404, "The requested resource does not exist.")
        )

    async def _delete_package(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        key = (ns, request.match_info["pkg"])
        if key not in self.packages:
            return _error(404, "The requested resource does not exist.")
        if any(a[:2] == key for a in self.actions):
            return _error(409, "Package not empty (contains actions)")
        return web.json_response(self.packages.pop(key))

    async def _list_actions(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        pkg = request.match_info["pkg"]
        return web.json_response([a.describe() for k, a in self.actions.items() if k[:2] == (ns, pkg)])

    async def _put_action(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        pkg, name = request.match_info["pkg"], request.match_info["action"]
        if (ns, pkg) not in self.packages:
            return _error(404, "The requested resource does not exist.")
        body = await request.json()
        key = (ns, pkg, name)
        existing = self.actions.get(key)
        overwrite = request.query.get("overwrite", "false").lower() == "true"
        if existing is not None and not overwrite:
            return _error(409, "resource already exists")
        limits = {k: v for k, v in (body.get("limits") or {}).items() if v is not None}
        exec_ = body.get("exec")
        if existing is not None and exec_ is None:  # an update of the limits only
            existing.limits = {**existing.limits, **limits}
            existing.version += 1
            return web.json_response(existing.describe())
        if not exec_ or not exec_.get("code"):
            return _error(400, "The request content was malformed: 'exec' with 'code' is required.")
        try:
            code = base64.b64decode(exec_["code"]) if exec_.get("binary") else exec_["code"].encode()
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                if "__main__.py" not in archive.namelist():
                    return _error(400, "The action's zip has no __main__.py.")
        except (ValueError, zipfile.BadZipFile) as err:
            return _error(400, f"The action's code is not a zip: {err}")
        limits = {"timeout": 60000, "memory": 256, **limits}
        meta = {k: v for k, v in exec_.items() if k not in ("code", "binary")}
        self.actions[key] = Action(
            ns, pkg, name, code, limits, meta, (existing.version + 1) if existing else 1
        )
        return web.json_response(self.actions[key].describe())

    async def _get_action(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        action = self.actions.get((ns, request.match_info["pkg"], request.match_info["action"]))
        return (
            web.json_response(action.describe())
            if action
            else _error(404, "The requested resource does not exist.")
        )

    async def _delete_action(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        action = self.actions.pop((ns, request.match_info["pkg"], request.match_info["action"]), None)
        return (
            web.json_response(action.describe())
            if action
            else _error(404, "The requested resource does not exist.")
        )

    def delete_action(self, action_name: str) -> int:
        """Delete every action called ``action_name`` (as ``wsk action delete`` would)."""
        keys = [k for k in self.actions if k[2] == action_name]
        for key in keys:
            self.actions.pop(key, None)
        return len(keys)

    # --- activations ------------------------------------------------------------------

    async def _get_activation(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        activation = self.activations.get(request.match_info["aid"])
        if activation is None or activation.namespace != ns:
            return _error(404, "The requested resource does not exist.")
        return web.json_response(activation.record())

    async def _invoke(self, request: web.Request) -> web.Response:
        ns = self._authorize(request, request.match_info["ns"])
        if isinstance(ns, web.Response):
            return ns
        pkg, name = request.match_info["pkg"], request.match_info["action"]
        action = self.actions.get((ns, pkg, name))
        if action is None:
            return _error(404, "The requested resource does not exist.")
        in_flight = sum(1 for a in self.activations.values() if a.end is None and a.namespace == ns)
        if in_flight >= self.concurrency_limit:
            self.throttled += 1
            return _error(
                429,
                f"Too many concurrent requests in flight (count: {in_flight}, allowed: {self.concurrency_limit}).",
            )
        params = await request.json() if request.can_read_body else {}
        activation = Activation(uuid.uuid4().hex, ns, f"{pkg}/{name}", params, time.time())
        self.activations[activation.activation_id] = activation
        task = asyncio.ensure_future(self._run_activation(action, activation))
        blocking = request.query.get("blocking", "false").lower() == "true"
        if not blocking:
            return web.json_response({"activationId": activation.activation_id}, status=202)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), self.blocking_wait)
        if activation.end is None:
            return web.json_response({"activationId": activation.activation_id}, status=202)
        if request.query.get("result", "false").lower() == "true":
            if activation.status == "success":
                return web.json_response(activation.result)
            return web.json_response(activation.result, status=502)
        return web.json_response(activation.record(), status=200 if activation.status == "success" else 502)

    async def _run_activation(self, action: Action, activation: Activation) -> None:
        workdir = tempfile.mkdtemp(prefix=f"act-{activation.activation_id[:8]}-", dir=self.workdir)
        try:
            action_dir = os.path.join(workdir, "action")
            # Off the event loop: the API keeps answering while containers are prepared.
            await asyncio.get_running_loop().run_in_executor(None, _unzip, action.code, action_dir)
            tmp = os.path.join(workdir, "tmp")
            os.makedirs(tmp)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": tmp,
                "TMPDIR": tmp,
                "LANG": "C.UTF-8",
                "__OW_ACTIVATION_ID": activation.activation_id,
                "__OW_NAMESPACE": activation.namespace,
                "__OW_ACTION_NAME": f"/{activation.namespace}/{activation.action}",
                "__OW_API_HOST": self.endpoint,
                "__OW_DEADLINE": str(int((activation.start + action.timeout_s) * 1000)),
            }
            log_path = os.path.join(workdir, "log")
            with open(log_path, "wb") as log:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-I",
                    ACTIONPROXY,
                    workdir,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its whole process group is killed at the limit
                )
            activation.pid = process.pid
            self._processes[activation.activation_id] = process
            assert process.stdin is not None
            process.stdin.write(json.dumps(activation.params).encode())
            await process.stdin.drain()
            process.stdin.close()
            # OpenWhisk's limit covers the run, not the container's init (unzip, imports).
            marker = os.path.join(workdir, "run_started")
            init_deadline = time.monotonic() + INIT_TIMEOUT
            while not os.path.exists(marker) and process.returncode is None:
                if time.monotonic() > init_deadline:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(process.wait()), 0.05)
            try:
                await asyncio.wait_for(process.wait(), action.timeout_s)
            except asyncio.TimeoutError:
                self._kill(activation.activation_id)
                await process.wait()
                activation.status = "developer error"
                activation.result = {
                    "error": f"The action exceeded its time limits of {int(action.timeout_s * 1000)} milliseconds."
                }
            else:
                self._kill(activation.activation_id)  # what it left behind goes with its container
                activation.status, activation.result = self._outcome(workdir, process.returncode)
            with open(log_path, "rb") as log_in:
                activation.logs = log_in.read()[-200_000:].decode(errors="replace")
        except Exception as err:  # the stand-in's own failure is a whisk internal error
            activation.status, activation.result = "whisk internal error", {"error": repr(err)}
        finally:
            self._processes.pop(activation.activation_id, None)
            activation.end = time.time()
            activation.done.set()
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _outcome(workdir: str, returncode: int | None) -> tuple[str, dict[str, Any]]:
        try:
            with open(os.path.join(workdir, "result.json"), encoding="utf-8") as handle:
                outcome = json.load(handle)
        except (OSError, ValueError):
            return "developer error", {
                "error": f"The action did not produce a valid response and exited ({returncode})."
            }
        if outcome.get("ok"):
            return "success", outcome["result"]
        return "application error", {"error": outcome.get("error", "unknown")}

    def _kill(self, activation_id: str) -> None:
        process = self._processes.get(activation_id)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
