"""An AWS Lambda stand-in on 127.0.0.1 over HTTPS, for Lithops' ``aws_lambda`` backend and
the trigger's Lambda client.

The control plane is moto's (the AWS stand-in its maker publishes), served in this process
by moto's own WSGI application: Lambda functions (create/get/list/delete, tags), layers,
STS ``GetCallerIdentity``, IAM roles. In front of it, this server does what moto does not:

* **SigV4 authentication**, as AWS answers it: an unknown access key is ``403
  UnrecognizedClientException`` (Lambda) / ``InvalidClientTokenId`` (STS, IAM); a wrong
  secret (the signature does not match) ``403 InvalidSignatureException`` /
  ``SignatureDoesNotMatch``. The signature is recomputed with botocore's own signer.
* **Invoke** (``POST /2015-03-31/functions/{name}/invocations``) runs for real: each
  invocation unpacks the function's code zip (as moto stored it) into a private directory
  (``LAMBDA_TASK_ROOT``; its own ``TMPDIR``/``HOME``, as a container's ``/tmp``) and runs
  ``bootstrap.py`` in a process of its own, which imports the function's ``Handler`` and
  calls it with the event and a context (Lithops' real ``entry_point.lambda_handler``).
  ``X-Amz-Invocation-Type: Event`` answers ``202`` + ``x-amzn-RequestId`` at once and runs
  in the background; ``RequestResponse`` waits and answers the handler's result (or
  ``X-Amz-Function-Error: Unhandled`` with Lambda's error shape). A missing function is
  ``404 ResourceNotFoundException``; more than ``concurrency_limit`` invocations running is
  ``429 TooManyRequestsException`` (reason ``ReservedFunctionConcurrentInvocationLimitExceeded``);
  an invocation outliving the function's ``Timeout`` (from the end of its init) is killed,
  with Lambda's "Task timed out after N seconds".
* :meth:`FakeLambda.down_for` takes the endpoint down (connections refused, kept-alive ones
  dropped) while invocations go on.

The layer: Lithops deploys its default runtime on a layer it builds by invoking a "layer
builder" function that pip-installs its dependencies (from the internet) into S3. The
fixture publishes a layer under Lithops' name first (an account where the layer exists:
Lithops then skips the builder), and the invocations' Python is the test virtualenv's,
whose site-packages play the layer's part.

Not modelled: Lambda's asynchronous-invocation queue (a real Event invoke above the
concurrency limit is queued and retried by Lambda, not refused: the 429 here is what a
synchronous invoke, or the invoke API's rate limit, answers), the retries Lambda makes of
a failed asynchronous invocation, container reuse, cold-start timing, memory limits, VPC.

The server runs in a thread of the test process (moto's backends are this process's);
tests read :attr:`FakeLambda.invocations`.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import trustme
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.datastructures import EnvironHeaders
from werkzeug.serving import BaseWSGIServer, make_server

BOOTSTRAP = str(Path(__file__).with_name("bootstrap.py"))
DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# How long an invocation may take to start (unzip, imports) before its timeout runs.
INIT_TIMEOUT = 120.0
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
AUTH_HEADER = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]+)"
)
QUERY_SERVICES = {"sts", "iam"}  # AWS query protocol: XML errors

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class Invocation:
    """One invocation of a function, and what the tests look at."""

    request_id: str
    function: str
    invocation_type: str
    event: dict[str, Any]
    start: float
    end: float | None = None
    status: str = "running"  # success | error | timeout
    result: Any = None
    logs: str = ""
    pid: int | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def call_ids(self) -> list[str]:
        return list(self.event.get("call_ids") or [])

    @property
    def params(self) -> dict[str, Any]:
        """The event (named as the OpenWhisk stand-in's activations name it)."""
        return self.event


def _json(
    status: str, body: Any, headers: Iterable[tuple[str, str]] = ()
) -> tuple[str, list[tuple[str, str]], bytes]:
    data = json.dumps(body, default=str).encode()
    return status, [("Content-Type", "application/json"), *headers], data


def _aws_error(
    service: str, status: str, code: str, message: str, **extra: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    request_id = str(uuid.uuid4())
    if service in QUERY_SERVICES:
        body = (
            f'<ErrorResponse xmlns="https://{service}.amazonaws.com/doc/2011-06-15/"><Error>'
            f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body
    return _json(
        status,
        {"message": message, "Type": "User", **extra},
        [("x-amzn-ErrorType", code), ("x-amzn-RequestId", request_id)],
    )


class FakeLambda:
    """The stand-in. :meth:`start`/:meth:`stop` (or ``with``).

    :param credentials: access key id -> secret access key, the keys AWS knows.
    :param concurrency_limit: invocations running at once (per account and region) before 429.
    :param workdir: where invocations get their private directories.
    :param region: the region whose Lambda host (``lambda.{region}.amazonaws.com``) the
        certificate names.
    """

    def __init__(
        self,
        *,
        credentials: dict[str, str],
        concurrency_limit: int = 100,
        workdir: str | None = None,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.credentials = dict(credentials)
        self.concurrency_limit = concurrency_limit
        self.region = region
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="fake-lambda-")
        self.invocations: dict[str, Invocation] = {}
        self.requests: list[tuple[str, str, str, int]] = []  # (service, method, path, status)
        self.throttled = 0
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._ca = trustme.CA()
        self.ca_bundle = os.path.join(self.workdir, "lambda-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_bundle)
        # certifi's bundle plus the test CA: for botocore's bare session (see routing.py).
        import certifi

        self.combined_ca_bundle = os.path.join(self.workdir, "lambda-ca-and-certifi.pem")
        with open(self.combined_ca_bundle, "wb") as out:
            out.write(Path(certifi.where()).read_bytes())
            out.write(b"\n" + self._ca.cert_pem.bytes())
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost", self.lambda_host).configure_cert(self._ssl)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._moto: Any = None
        self._port = 0
        self._down_until = 0.0

    # --- life cycle -------------------------------------------------------------------

    @property
    def lambda_host(self) -> str:
        return f"lambda.{self.region}.amazonaws.com"

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> FakeLambda:
        from moto.moto_api._internal.models import moto_api_backend
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        moto_api_backend.reset()  # moto's backends are per process: nothing from an earlier test
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._serve()
        return self

    def _serve(self) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        self._server = make_server(
            "127.0.0.1",
            self._port,
            self._app,
            threaded=True,
            request_handler=MotoRequestHandler,
            ssl_context=self._ssl,
        )
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-lambda", daemon=True)
        self._thread.start()

    def _close_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def stop(self) -> None:
        self._down_until = float("inf")  # no restart after a down_for
        for request_id in list(self._processes):
            self._kill(request_id)
        self._close_server()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def down_for(self, seconds: float) -> None:
        """Take the endpoint down now for ``seconds`` (connections refused, kept-alive ones
        dropped); running invocations go on, as they would in the cloud."""
        self._down_until = time.monotonic() + seconds
        self._close_server()

        def come_up() -> None:
            if time.monotonic() < self._down_until + 1:  # not stopped meanwhile
                self._serve()

        timer = threading.Timer(seconds, come_up)
        timer.daemon = True
        timer.start()

    def __enter__(self) -> FakeLambda:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_env(self) -> dict[str, str]:
        """The standard AWS settings that point SDK clients (boto3, aiobotocore) here."""
        return {
            "AWS_ENDPOINT_URL_LAMBDA": self.endpoint,
            "AWS_ENDPOINT_URL_STS": self.endpoint,
            "AWS_ENDPOINT_URL_IAM": self.endpoint,
            "AWS_ENDPOINT_URL_ECR": self.endpoint,
            "AWS_CA_BUNDLE": self.ca_bundle,
        }

    def routes(self) -> dict[str, tuple[str, int]]:
        """Where Lithops' hand-built invoke to the AWS host must go (see routing.py)."""
        return {self.lambda_host: ("127.0.0.1", self.port)}

    # --- what tests read ----------------------------------------------------------------

    def running(self) -> list[Invocation]:
        return [i for i in list(self.invocations.values()) if i.end is None]

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every invocation has ended (a call's status is written a moment before its
        process exits and its sandbox is removed)."""
        deadline = time.monotonic() + timeout
        for invocation in list(self.invocations.values()):
            invocation.done.wait(max(deadline - time.monotonic(), 0.0))

    def invocations_of(self, job_id: str) -> list[Invocation]:
        """The invocations of one Lithops job (``M000``...), by their event, in order."""
        return [i for i in list(self.invocations.values()) if i.event.get("job_id") == job_id]

    def function_names(self) -> list[str]:
        from moto.awslambda.models import lambda_backends

        return [f.function_name for f in lambda_backends[ACCOUNT_ID][self.region].list_functions()]

    def delete_function(self, name: str) -> None:
        from moto.awslambda.models import lambda_backends

        lambda_backends[ACCOUNT_ID][self.region].delete_function(name)

    # --- the WSGI application -----------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if time.monotonic() < self._down_until:
            # A kept-alive connection opened before the outage: drop it, as a dead host would.
            with contextlib.suppress(OSError):
                environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError("endpoint down")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = EnvironHeaders(environ)
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        service = "?"
        match = AUTH_HEADER.match(headers.get("Authorization", ""))
        if match:
            service = match["service"]
        if path.startswith("/moto-api"):
            return self._moto(environ, start_response)  # type: ignore[no-any-return]
        refusal = self._authenticate(environ, headers, body, match)
        if refusal is not None:
            return self._respond(start_response, service, method, path, refusal)
        invoke = INVOKE_PATH.match(path)
        if invoke and method == "POST":
            outcome = self._invoke(
                unquote(invoke.group(1)), headers, body, match["region"] if match else self.region
            )
            return self._respond(start_response, service, method, path, outcome)
        statuses: list[str] = []

        def recording_start(status: str, response_headers: list[tuple[str, str]], *args: Any) -> Any:
            statuses.append(status)
            return start_response(status, response_headers, *args)

        result = self._moto(environ, recording_start)
        self.requests.append((service, method, path, int(statuses[0].split()[0]) if statuses else 0))
        return result  # type: ignore[no-any-return]

    def _respond(
        self,
        start_response: StartResponse,
        service: str,
        method: str,
        path: str,
        outcome: tuple[str, list[tuple[str, str]], bytes],
    ) -> list[bytes]:
        status, headers, body = outcome
        self.requests.append((service, method, path, int(status.split()[0])))
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _authenticate(
        self, environ: dict[str, Any], headers: EnvironHeaders, body: bytes, match: re.Match[str] | None
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """``None`` when the request is signed with a known key, else AWS's 403."""
        if match is None:
            return _aws_error(
                "lambda",
                "403 Forbidden",
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        service = match["service"]
        secret = self.credentials.get(match["key"])
        if secret is None:
            code = "InvalidClientTokenId" if service in QUERY_SERVICES else "UnrecognizedClientException"
            return _aws_error(
                service, "403 Forbidden", code, "The security token included in the request is invalid."
            )
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        raw_path = raw_path.split("?", 1)[0]
        query = environ.get("QUERY_STRING", "")
        host = headers.get("Host", "")
        signed = match["signed"].split(";")
        request = AWSRequest(
            method=environ["REQUEST_METHOD"],
            url=f"https://{host}{raw_path}" + (f"?{query}" if query else ""),
            headers={name: headers.get(name, "") for name in signed},
            data=body,
        )
        request.context["timestamp"] = headers.get("X-Amz-Date", "")
        signer = SigV4Auth(
            Credentials(match["key"], secret, headers.get("X-Amz-Security-Token")), service, match["region"]
        )
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, match["signature"]):
            code = "SignatureDoesNotMatch" if service in QUERY_SERVICES else "InvalidSignatureException"
            return _aws_error(
                service,
                "403 Forbidden",
                code,
                "The request signature we calculated does not match the signature you provided. Check "
                "your AWS Secret Access Key and signing method. Consult the service documentation for details.",
            )
        return None

    # --- invocations ----------------------------------------------------------------------

    def _invoke(
        self, name: str, headers: EnvironHeaders, body: bytes, region: str
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        from moto.awslambda.exceptions import UnknownFunctionException
        from moto.awslambda.models import lambda_backends

        try:
            function = lambda_backends[ACCOUNT_ID][region].get_function(name)
        except UnknownFunctionException:
            return _aws_error(
                "lambda",
                "404 Not Found",
                "ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}",
            )
        invocation_type = headers.get("X-Amz-Invocation-Type", "RequestResponse")
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            return _aws_error(
                "lambda",
                "400 Bad Request",
                "InvalidRequestContentException",
                "Could not parse request body into json",
            )
        with self._lock:
            if len(self.running()) >= self.concurrency_limit:
                self.throttled += 1
                return _aws_error(
                    "lambda",
                    "429 Too Many Requests",
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                    Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
                )
            invocation = Invocation(str(uuid.uuid4()), name, invocation_type, event, time.time())
            self.invocations[invocation.request_id] = invocation
        request_header = ("x-amzn-RequestId", invocation.request_id)
        if invocation_type == "Event":
            threading.Thread(target=self._run, args=(function, invocation), daemon=True).start()
            return "202 Accepted", [request_header], b""
        self._run(function, invocation)
        headers_out = [request_header, ("X-Amz-Executed-Version", "$LATEST")]
        if invocation.status != "success":
            headers_out.append(("X-Amz-Function-Error", "Unhandled"))
        return _json("200 OK", invocation.result, headers_out)

    def _run(self, function: Any, invocation: Invocation) -> None:
        workdir = tempfile.mkdtemp(prefix=f"inv-{invocation.request_id[:8]}-", dir=self.workdir)
        try:
            task_root = os.path.join(workdir, "task")
            with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
                archive.extractall(task_root)
            tmp = os.path.join(workdir, "tmp")
            os.makedirs(tmp)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": tmp,
                "TMPDIR": tmp,
                "LANG": "C.UTF-8",
                **{str(k): str(v) for k, v in (function.environment_vars or {}).items()},
                "LAMBDA_TASK_ROOT": task_root,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout),
                "LAMBDA_FAKE_FUNCTION_ARN": function.function_arn,
                "LAMBDA_FAKE_REQUEST_ID": invocation.request_id,
            }
            log_path = os.path.join(workdir, "log")
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-I", BOOTSTRAP, workdir, function.handler],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its whole process group goes at the timeout
                )
            invocation.pid = process.pid
            self._processes[invocation.request_id] = process
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(json.dumps(invocation.event, default=str).encode())
                process.stdin.close()
            marker = os.path.join(workdir, "run_started")
            init_deadline = time.monotonic() + INIT_TIMEOUT
            while not os.path.exists(marker) and process.poll() is None and time.monotonic() < init_deadline:
                time.sleep(0.02)
            try:
                process.wait(float(function.timeout))
            except subprocess.TimeoutExpired:
                self._kill(invocation.request_id)
                process.wait()
                invocation.status = "timeout"
                invocation.result = {
                    "errorMessage": f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                    f"{invocation.request_id} Task timed out after {float(function.timeout):.2f} seconds"
                }
            else:
                self._kill(invocation.request_id)  # what it left behind goes with its sandbox
                invocation.status, invocation.result = self._outcome(workdir, process.returncode)
            with open(log_path, "rb") as log_in:
                invocation.logs = log_in.read()[-200_000:].decode(errors="replace")
        except Exception as err:  # the stand-in's own failure: Lambda's ServiceException
            invocation.status, invocation.result = (
                "error",
                {"errorMessage": repr(err), "errorType": "ServiceException"},
            )
        finally:
            self._processes.pop(invocation.request_id, None)
            invocation.end = time.time()
            invocation.done.set()
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _outcome(workdir: str, returncode: int | None) -> tuple[str, Any]:
        try:
            with open(os.path.join(workdir, "result.json"), encoding="utf-8") as handle:
                outcome = json.load(handle)
        except (OSError, ValueError):
            return "error", {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: Error: Runtime exited with error: exit status {returncode}",
            }
        if outcome.get("ok"):
            return "success", outcome["result"]
        return "error", {k: v for k, v in outcome.items() if k != "ok"}

    def _kill(self, request_id: str) -> None:
        process = self._processes.get(request_id)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def prepare_account(fake: FakeLambda, access_key: str, secret_key: str) -> str:
    """What an AWS account that ran Lithops before has: an execution role for its functions
    and Lithops' dependency layer (so that Lithops does not run its pip-installing "layer
    builder"). Returns the role's ARN. The layer's name is Lithops' own
    (``AWSLambdaBackend._format_layer_name`` of its default runtime, for the user id STS
    reports); its content is a placeholder: the invocations' Python has the dependencies."""
    import boto3
    from lithops import utils
    from lithops.serverless.backends.aws_lambda import config as lambda_config
    from lithops.version import __version__

    session = boto3.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=fake.region
    )
    kwargs: dict[str, Any] = {"endpoint_url": fake.endpoint, "verify": fake.ca_bundle}
    role = session.client("iam", **kwargs).create_role(
        RoleName="lithops-execution-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    user_id = session.client("sts", **kwargs).get_caller_identity()["UserId"]
    user_key = user_id.split(":")[0][-4:].lower()
    runtime = f"default-runtime-v{utils.CURRENT_PY_VERSION.replace('.', '')}"
    layer_name = f"lithops_v{__version__.replace('.', '')}_{user_key}_{runtime}_layer"
    content = io.BytesIO()
    with zipfile.ZipFile(content, "w") as archive:
        archive.writestr(
            "python/README", "stand-in layer: the runtime's site-packages hold Lithops' dependencies\n"
        )
    session.client("lambda", **kwargs).publish_layer_version(
        LayerName=layer_name,
        Content={"ZipFile": content.getvalue()},
        CompatibleRuntimes=[lambda_config.AVAILABLE_PY_RUNTIMES[utils.CURRENT_PY_VERSION]],
    )
    return str(role)
