"""A local IBM COS stand-in over TLS: moto's S3 server behind a TLS gateway, with IAM.

Lithops' ``ibm_cos`` storage backend rewrites its endpoint to ``https://``, so IBM COS
tests need an S3 endpoint that speaks TLS, with a certificate the clients verify against a
test CA (made here with ``trustme``; clients get it through ``AWS_CA_BUNDLE`` /
``REQUESTS_CA_BUNDLE``). Why a gateway in front of moto rather than moto's own
``--ssl-cert``: IBM COS authenticates either with HMAC keys (SigV4) or with IAM bearer
tokens, and moto checks neither. The gateway does what COS does at its door:

* ``POST /identity/token``: the IAM stand-in (:class:`ibm_iam_fakes.FakeIam`);
* every other request must carry the HMAC access key id the gateway was given, or a
  bearer token the IAM stand-in issued (and did not revoke): otherwise 403, as COS
  answers; accepted requests are forwarded byte for byte to moto over plain HTTP.

It runs on its own event loop in a thread of the test process, so that every process the
tests start (the localhost runner, Lithops' workers, an Airflow cluster) reaches it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import trustme
from aiohttp import web
from ibm_iam_fakes import FakeIam

from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY

# Hop-by-hop headers, and those aiohttp sets itself from the body it sends.
PUBLIC_IAM_HOST = "iam.cloud.ibm.com"
SERVICE_INSTANCE = "crn:v1:bluemix:public:cloud-object-storage:global:a/0:test::"
_DROP_REQUEST = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}
_DROP_RESPONSE = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "server",
    "date",
}


@dataclass
class LocalCa:
    """A test certificate authority and a server certificate for this machine."""

    directory: str
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.ca_file = os.path.join(self.directory, "test-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        # Also IAM's public name: Lithops' token managers always ask it (see CosGateway).
        self.server_cert = self.ca.issue_cert("127.0.0.1", "localhost", PUBLIC_IAM_HOST)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        return context


@dataclass
class CosGateway:
    """The TLS door of the IBM COS stand-in (see the module docstring).

    :param backend: moto's plain-HTTP endpoint.
    :param access_key_id: the HMAC key id COS accepts.
    :param iam: the IAM stand-in whose tokens COS accepts.
    """

    backend: str
    access_key_id: str
    iam: FakeIam
    ca: LocalCa
    port: int = 0
    # (auth kind, operation) -> count; auth kind: "hmac", "bearer", "rejected".
    requests: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    bearer_tokens: set[str] = field(default_factory=set)
    tunnels: int = 0  # CONNECTs to IAM's public name, tunnelled here
    tunnels_refused: int = 0

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def proxy_url(self) -> str:
        """An HTTP proxy (``HTTPS_PROXY``) that tunnels ``CONNECT iam.cloud.ibm.com:443`` to
        this gateway and refuses every other destination: Lithops' own token managers, which
        always ask the public IAM endpoint, then get their tokens from the IAM stand-in."""
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def iam_url(self) -> str:
        return f"{self.endpoint}/identity/token"

    def count(self, auth: str) -> int:
        return sum(n for (kind, _op), n in self.requests.items() if kind == auth)

    def _auth(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header.removeprefix("Bearer ")
            if self.iam.valid(token):
                self.bearer_tokens.add(token)
                return "bearer"
            return None
        if header.startswith("AWS4-HMAC-SHA256 ") and f"Credential={self.access_key_id}/" in header:
            return "hmac"
        if "X-Amz-Credential" in request.query and request.query["X-Amz-Credential"].startswith(
            self.access_key_id + "/"
        ):
            return "hmac"  # a presigned URL
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        operation = f"{request.method} {'object' if request.path.strip('/').count('/') else 'bucket'}"
        auth = self._auth(request)
        if auth is None:
            self.requests["rejected", operation] += 1
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                "<Message>Access Denied</Message><Resource>/</Resource><RequestId>r</RequestId></Error>"
            )
            return web.Response(status=403, body=body.encode(), content_type="application/xml")
        self.requests[auth, operation] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        if auth == "bearer":
            # moto knows no bearer tokens (checked above) and treats an unsigned request as
            # anonymous: it gets the account's key id instead (moto does not check signatures).
            headers["Authorization"] = (
                f"AWS4-HMAC-SHA256 Credential={self.access_key_id}/20240101/us-east-1/s3/aws4_request, "
                "SignedHeaders=host, Signature=0"
            )
            if "aws-chunked" in headers.get("Content-Encoding", "") and "x-amz-content-sha256" not in {
                k.lower() for k in headers
            }:
                # ibm_botocore's oauth signer streams uploads aws-chunked (CRC32 trailer) without
                # saying so in x-amz-content-sha256, as SigV4 would; COS decodes them anyway,
                # moto only when told.
                headers["x-amz-content-sha256"] = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        body = await request.read()
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.backend + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            auto_decompress=False,
        ) as upstream:
            payload = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP_RESPONSE}
            if request.method == "HEAD":
                # No body, but the object's size, as S3 answers a HEAD.
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                if "Content-Length" in upstream.headers:
                    response.content_length = int(upstream.headers["Content-Length"])
                await response.prepare(request)
                return response
            return web.Response(status=upstream.status, headers=out_headers, body=payload)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target = head.split(b" ", 2)[:2]
            if method != b"CONNECT" or target.decode() != f"{PUBLIC_IAM_HOST}:443":
                self.tunnels_refused += 1
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            self.tunnels += 1
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _serve(self, started: threading.Event) -> None:
        self._session = aiohttp.ClientSession(skip_auto_headers=("Content-Type", "User-Agent"))
        app = web.Application(client_max_size=1024**3)
        app.router.add_post("/identity/token", self.iam.handle)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self.ca.server_context())
        await site.start()
        self.port = runner.addresses[0][1]
        proxy = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        self.proxy_port = proxy.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        started.set()
        await self._stop.wait()
        proxy.close()
        await runner.cleanup()
        await self._session.close()

    def start(self) -> CosGateway:
        self._session: aiohttp.ClientSession | None = None
        started = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._serve(started),), daemon=True
        )
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the COS gateway did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def new_ca_dir() -> str:
    return tempfile.mkdtemp(prefix="pywren-test-ca-")


def ca_env(ca_file: str) -> dict[str, Any]:
    """What every process needs to trust the test CA: botocore and ibm_botocore (Lithops'
    storage clients, the trigger's aiobotocore client) read ``AWS_CA_BUNDLE``; requests
    (IAM token managers) and our IAM client read ``REQUESTS_CA_BUNDLE``."""
    return {"AWS_CA_BUNDLE": ca_file, "REQUESTS_CA_BUNDLE": ca_file}


def ibm_cos_connection(gateway: CosGateway, bucket: str, auth: str, api_key: str = "") -> str:
    """The Connection as a user would write it: localhost compute, ibm_cos storage."""
    section: dict[str, Any] = {"endpoint": gateway.endpoint, "region": "us-south", "storage_bucket": bucket}
    conn: dict[str, Any] = {"conn_type": "lithops"}
    if auth == "hmac":
        conn.update(login=EMBEDDED_ACCESS_KEY, password=EMBEDDED_SECRET_KEY)
    else:
        section.update(api_key=api_key, iam_endpoint=gateway.iam_url, service_instance_id=SERVICE_INSTANCE)
    conn["extra"] = {
        "lithops": {"backend": "localhost", "storage": "ibm_cos"},
        "localhost": {"version": 1},
        "ibm_cos": section,
    }
    return json.dumps(conn)


def start_gateway(moto_endpoint: str, directory: str, api_keys: set[str]) -> CosGateway:
    """A started gateway in front of ``moto_endpoint``, with a new test CA in ``directory``,
    accepting the embedded HMAC keys and IAM tokens for ``api_keys``."""
    return CosGateway(
        backend=moto_endpoint,
        access_key_id=EMBEDDED_ACCESS_KEY,
        iam=FakeIam(valid_keys=set(api_keys)),
        ca=LocalCa(directory),
    ).start()
