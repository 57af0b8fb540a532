"""A minimal S3-compatible responder for benchmarks moto cannot serve (thousands of pollers).

It answers, path-style, what the pollers and fetchers send: ``ListObjectsV2`` (``prefix``,
``start-after``, ``max-keys``, ``continuation-token``, ``encoding-type``), ``GetObject``,
``HeadObject``, ``HeadBucket`` and ``PutObject``, from an in-memory index, with S3's XML
(every ``Contents`` field S3 sends, so that the client parses what it would parse
against S3). Listing is a bisection, so its cost does not grow with the bucket (moto
scans the whole bucket on every LIST). No authentication is checked.

It runs in its own process (``python -m benchmarks.s3_responder SPEC``), so that its CPU
is not counted as the client's. The spec (JSON) names the port, the bucket, optional
*synthetic* jobs (``jobs`` map jobs of ``calls`` calls each, the first ``done`` finished,
all started, generated on demand so that 5,000 jobs cost no memory) and an optional
pickle of explicit ``(key, bytes)`` objects. With ``"canned": true`` a synthetic job's
listings are rendered once per shape (the same ``start-after`` within a job) and served
with the job's prefix substituted, so that the responder is not the bottleneck of
thousands of pollers on a 2-core machine.
"""

from __future__ import annotations

import base64
import bisect
import json
import pickle
import random
import re
import resource
import socket
import subprocess
import sys
import time
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

LAST_MODIFIED = "2026-01-01T00:00:00.000Z"
LAST_MODIFIED_HTTP = "Thu, 01 Jan 2026 00:00:00 GMT"
ETAG = '"9b2cf535f27731c974343645a3985328"'
XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_SYNTHETIC = re.compile(r"^lithops\.jobs/([0-9a-f]{6})-0-M000/")


class Index:
    """The bucket's objects: synthetic jobs plus explicit objects."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.bucket: str = spec["bucket"]
        synthetic = spec.get("synthetic") or {}
        self.jobs = int(synthetic.get("jobs", 0))
        self.calls = int(synthetic.get("calls", 0))
        self.done = int(synthetic.get("done", 0))
        rnd = random.Random(3)
        self.activations = [f"{rnd.getrandbits(48):012x}" for _ in range(self.calls)]
        self.status_template: str = synthetic.get("status_template", "{}")
        suffixes: list[tuple[str, int]] = []
        for call in range(self.calls):
            suffixes.append((f"{call:05d}/{self.activations[call]}.init", 0))
            if call < self.done:
                suffixes.append((f"{call:05d}/status.json", len(self.status_template) + 16))
        suffixes.append(("aggdata.pickle", 84 * max(1, self.calls)))
        self.suffixes = [s for s, _ in suffixes]
        self.suffix_sizes = [n for _, n in suffixes]
        self.objects: dict[str, bytes] = {}
        if spec.get("objects_pickle"):
            with open(spec["objects_pickle"], "rb") as handle:
                self.objects = dict(pickle.load(handle))
        self.keys = sorted(self.objects)
        self.canned = bool(spec.get("canned"))
        self._listings: dict[tuple[str, str, str], str] = {}

    def _synthetic_job(self, key: str) -> str | None:
        match = _SYNTHETIC.match(key)
        if match and int(match.group(1), 16) < self.jobs:
            return match.group(0)
        return None

    def list(self, prefix: str, after: str, max_keys: int) -> tuple[list[tuple[str, int]], bool]:
        """Up to ``max_keys`` keys under ``prefix`` after ``after``, and whether more remain."""
        job = self._synthetic_job(prefix)
        if job is not None and prefix == job:
            rest = after[len(job) :] if after.startswith(job) else ("" if after < job else "\uffff")
            start = bisect.bisect_right(self.suffixes, rest) if rest else 0
            end = min(start + max_keys, len(self.suffixes))
            synthetic = [(job + self.suffixes[i], self.suffix_sizes[i]) for i in range(start, end)]
            return synthetic, end < len(self.suffixes)
        start = (
            bisect.bisect_right(self.keys, max(prefix, after))
            if after >= prefix
            else bisect.bisect_left(self.keys, prefix)
        )
        page: list[tuple[str, int]] = []
        index = start
        while index < len(self.keys) and len(page) < max_keys:
            key = self.keys[index]
            if not key.startswith(prefix):
                return page, False
            page.append((key, len(self.objects[key])))
            index += 1
        more = index < len(self.keys) and self.keys[index].startswith(prefix)
        return page, more

    def canned_listing(self, query: Any) -> str | None:
        """A synthetic job's listing from the cache of rendered ones (``None``: not cacheable)."""
        prefix = query.get("prefix", "")
        start_after = query.get("start-after", "")
        if not self.canned or query.get("continuation-token"):
            return None
        job = self._synthetic_job(prefix)
        if job is None or prefix != job or (start_after and not start_after.startswith(job)):
            return None
        shape = (start_after[len(job) :], query.get("max-keys", "1000"), query.get("encoding-type", ""))
        template = self._listings.get(shape)
        if template is None:
            rendered = _list_xml(self, query)
            if "<NextContinuationToken>" in rendered:  # the token names the job's key
                return rendered
            template = self._listings[shape] = rendered.replace(job, "@JOB@")
        return template.replace("@JOB@", job)

    def get(self, key: str) -> bytes | None:
        if key in self.objects:
            return self.objects[key]
        job = self._synthetic_job(key)
        if job is None:
            return None
        rest = key[len(job) :]
        if rest.endswith("/status.json") and rest[:5].isdigit() and int(rest[:5]) < self.done:
            call = rest[:5]
            return self.status_template.replace("@CALL@", call).encode()
        if rest.endswith(".init") and rest[:5].isdigit() and int(rest[:5]) < self.calls:
            return b""
        return None

    def put(self, key: str, body: bytes) -> None:
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = body


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    return base64.urlsafe_b64decode(token.encode()).decode()


def _list_xml(index: Index, query: Any) -> str:
    prefix = query.get("prefix", "")
    start_after = query.get("start-after", "")
    token = query.get("continuation-token")
    max_keys = min(int(query.get("max-keys", "1000")), 1000)
    after = _untoken(token) if token else start_after
    page, truncated = index.list(prefix, after, max_keys)
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{XMLNS}">',
        f"<Name>{escape(index.bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
        f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
    ]
    if query.get("encoding-type") == "url":
        parts.append("<EncodingType>url</EncodingType>")
    if token:
        parts.append(f"<ContinuationToken>{token}</ContinuationToken>")
    if start_after:
        parts.append(f"<StartAfter>{escape(start_after)}</StartAfter>")
    tail = (
        f"</Key><LastModified>{LAST_MODIFIED}</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;"
        "</ETag><Size>"
    )
    parts.extend(
        f"<Contents><Key>{escape(key)}{tail}{size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for key, size in page
    )
    if truncated and page:
        parts.append(f"<NextContinuationToken>{_token(page[-1][0])}</NextContinuationToken>")
    parts.append("</ListBucketResult>")
    return "".join(parts)


def _error(status: int, code: str, message: str) -> web.Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


def make_app(index: Index) -> web.Application:
    async def bucket_handler(request: web.Request) -> web.StreamResponse:
        if request.match_info["bucket"] != index.bucket:
            return _error(404, "NoSuchBucket", "The specified bucket does not exist")
        if request.method == "HEAD":
            return web.Response(status=200)
        if request.method == "PUT":
            return web.Response(status=200)
        if request.query.get("list-type") == "2":
            body = index.canned_listing(request.query) or _list_xml(index, request.query)
            return web.Response(body=body.encode(), content_type="application/xml")
        return _error(501, "NotImplemented", "only ListObjectsV2 is implemented")

    async def object_handler(request: web.Request) -> web.StreamResponse:
        if request.match_info["bucket"] != index.bucket:
            return _error(404, "NoSuchBucket", "The specified bucket does not exist")
        key = request.match_info["key"]
        if request.method == "PUT":
            index.put(key, await request.read())
            return web.Response(status=200, headers={"ETag": ETAG})
        body = index.get(key)
        if body is None:
            if request.method == "HEAD":
                return web.Response(status=404)
            return _error(404, "NoSuchKey", "The specified key does not exist.")
        headers = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED_HTTP, "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return web.Response(status=200, headers=dict(headers, **{"Content-Length": str(len(body))}))
        return web.Response(status=200, body=body, headers=headers, content_type="binary/octet-stream")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{bucket}", bucket_handler)
    app.router.add_route("*", "/{bucket}/", bucket_handler)
    app.router.add_route("*", "/{bucket}/{key:.+}", object_handler)
    return app


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    index = Index(spec)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    web.run_app(
        make_app(index), host="127.0.0.1", port=int(spec["port"]), access_log=None, print=None, backlog=4096
    )


class Responder:
    """The responder process, started and stopped by the harness."""

    def __init__(self, spec: dict[str, Any], scratch: str) -> None:
        from pywren_deferrable.embedded import free_port

        self.port = free_port()
        self.spec = dict(spec, port=self.port)
        self.spec_path = f"{scratch}/responder-{self.port}.json"
        self.process: subprocess.Popen[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Responder:
        with open(self.spec_path, "w", encoding="utf-8") as handle:
            json.dump(self.spec, handle)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.s3_responder", self.spec_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"the S3 responder exited with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the S3 responder did not start")

    def __exit__(self, *_: Any) -> None:
        from pywren_deferrable.embedded import stop_process

        stop_process(self.process)

    def cpu_seconds(self) -> float:
        from benchmarks.moto_server import process_cpu_seconds

        assert self.process is not None
        return process_cpu_seconds(self.process.pid)


if __name__ == "__main__":
    main(sys.argv[1])
