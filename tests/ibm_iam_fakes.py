"""Local stand-ins for IBM Cloud IAM and an IBM COS endpoint that takes IAM bearer tokens,
both aiohttp servers on 127.0.0.1, for tests of ``pywren_deferrable.hooks.ibm_iam``."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from aiohttp import web

GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"
_serial = itertools.count(1)


def jwt_like(claims: dict[str, object]) -> str:
    """A token shaped like IAM's (a JWT): ibm-cloud-sdk-core reads its ``exp`` / ``iat``
    claims (unverified) to know when to renew it. Signed with nothing: only the stand-ins
    check tokens, by value."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signature = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{signature}"


class FakeClock:
    """An injectable monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeIam:
    """IAM's ``POST /identity/token``: issues tokens for ``valid_keys``, counts requests.

    ``fail_next``: statuses answered (in order) before issuing tokens again.
    ``gate``: when set to an unset event, requests wait for it (to hold a refresh open).
    ``echo_key``: put the submitted key into the error message (to check redaction).
    """

    valid_keys: set[str]
    expires_in: int = 3600
    fail_next: list[int] = field(default_factory=list)
    gate: asyncio.Event | None = None
    echo_key: bool = False
    requests: int = 0
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)

    def valid(self, token: str) -> bool:
        return token in self.issued and token not in self.revoked

    def revoke_all(self) -> None:
        """Every token issued so far expires (as storage would see it)."""
        self.revoked.update(self.issued)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        form = await request.post()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response(
                {"errorCode": "BXNIM0000E", "errorMessage": "unavailable"}, status=status
            )
        key = str(form.get("apikey", ""))
        if form.get("grant_type") != GRANT_TYPE or key not in self.valid_keys:
            message = "Provided API key could not be found."
            if self.echo_key:
                message += f" ({key})"
            return web.json_response(
                {"errorCode": "BXNIM0415E", "errorMessage": message, "context": {"requestId": "x"}},
                status=400,
            )
        now = int(time.time())
        token = jwt_like(
            {"iam_id": "IBMid-test", "jti": f"tok-{next(_serial)}", "iat": now, "exp": now + self.expires_in}
        )
        self.issued.append(token)
        return web.json_response(
            {
                "access_token": token,
                "refresh_token": "not_supported",
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "expiration": now + self.expires_in,
                "scope": "ibm openid",
            }
        )


@dataclass
class FakeCos:
    """Enough of IBM COS for ListObjectsV2, GetObject and ListBuckets, with bearer auth.

    A request without a bearer token IAM issued (and did not revoke) gets 403
    AccessDenied, as does every request while ``deny_all`` is set.
    """

    iam: FakeIam
    bucket: str
    objects: dict[str, bytes]
    deny_all: bool = False
    requests: int = 0
    rejected: int = 0
    seen_tokens: list[str] = field(default_factory=list)
    instance_ids: dict[str, str | None] = field(default_factory=dict)  # operation -> header

    def _error(self, status: int, code: str, message: str) -> web.Response:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>/</Resource>"
            "<RequestId>r</RequestId></Error>"
        )
        return web.Response(status=status, body=body.encode(), content_type="application/xml")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        self.seen_tokens.append(token)
        if self.deny_all or not self.iam.valid(token):
            self.rejected += 1
            return self._error(403, "AccessDenied", "Access Denied")
        parts = request.path.strip("/").split("/", 1)
        if parts == [""]:
            self.instance_ids["ListBuckets"] = request.headers.get("ibm-service-instance-id")
            return self._list_buckets()
        if parts[0] != self.bucket:
            return self._error(404, "NoSuchBucket", "The specified bucket does not exist.")
        if len(parts) == 1:
            self.instance_ids["ListObjectsV2"] = request.headers.get("ibm-service-instance-id")
            return self._list(request)
        data = self.objects.get(parts[1])
        if data is None:
            return self._error(404, "NoSuchKey", "The specified key does not exist.")
        self.instance_ids["GetObject"] = request.headers.get("ibm-service-instance-id")
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={"ETag": '"e"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"},
        )

    def _list(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        start_after = request.query.get("start-after", "")
        keys = sorted(k for k in self.objects if k.startswith(prefix) and k > start_after)
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
            f'<ETag>"e"</ETag><Size>{len(self.objects[k])}</Size><StorageClass>STANDARD</StorageClass>'
            "</Contents>"
            for k in keys
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{self.bucket}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(keys)}</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
        )
        return web.Response(body=body.encode(), content_type="application/xml")

    def _list_buckets(self) -> web.Response:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            "<Owner><ID>o</ID><DisplayName>o</DisplayName></Owner>"
            f"<Buckets><Bucket><Name>{self.bucket}</Name>"
            "<CreationDate>2024-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets>"
            "</ListAllMyBucketsResult>"
        )
        return web.Response(body=body.encode(), content_type="application/xml")


@asynccontextmanager
async def serve(handler: object, path: str = "/{tail:.*}") -> AsyncIterator[str]:
    """Serve ``handler.handle`` on 127.0.0.1 (any method, any path); yield the base URL."""
    app = web.Application()
    app.router.add_route("*", path, handler.handle)  # type: ignore[attr-defined]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
