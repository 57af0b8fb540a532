"""Row 7: what one idle poll costs on each storage, beside S3 in the same run.

One job of ``CALLS`` calls in Lithops' key layout (:mod:`benchmarks.lithops_layout`):
the first ``DONE`` finished in call order, the next ``RUNNING`` are running (their
``.init`` written), nothing changes between polls. The project's
:class:`~pywren_deferrable.triggers.poll.JobPoller` polls it through each storage's
status source, on each storage's local server as its maker publishes it: moto (S3),
fake-gcs-server (GCS), Azurite (Azure Blob, plain HTTP like moto), redis-server. Counted:
the source's requests per idle poll (Redis: round trips, a pipeline is one) and this
process's CPU per idle poll (the servers run in other processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import BenchResult, Context, Row, median, unique_bucket
from benchmarks.lithops_layout import JobLayout
from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY
from pywren_deferrable.job import JobRef, StorageLocation
from pywren_deferrable.storages.azure import AzureCredentials
from pywren_deferrable.storages.redis import RedisCredentials
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.triggers.status import open_status_source

NAME = "storages"
CALLS, DONE, RUNNING = 1_000, 100, 100

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


@contextlib.contextmanager
def _servers(ctx: Context) -> Iterator[dict[str, tuple[StorageLocation, Any]]]:
    """Every storage's server, each with a fresh bucket: {kind: (location, credentials)}."""
    from storage_servers import AzuriteServer, FakeGcsServer, RedisServer

    from pywren_deferrable.config import S3Credentials

    moto = ctx.moto()
    gcs, azurite, redis_server = FakeGcsServer(), AzuriteServer(tls=False), RedisServer()
    try:
        gcs.start(), azurite.start(), redis_server.start()
        bucket = unique_bucket("storages")
        moto.create_bucket(bucket)
        gcs.create_bucket(bucket)
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient(azurite.account_url, credential=azurite.key).create_container(bucket)
        yield {
            "s3": (
                StorageLocation(kind="s3", bucket=bucket, backend="minio", endpoint=moto.endpoint),
                S3Credentials(EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY),
            ),
            "gcs": (
                StorageLocation(kind="gcs", bucket=bucket, backend="gcp_storage", endpoint=gcs.url),
                None,
            ),
            "azure": (
                StorageLocation(
                    kind="azure", bucket=bucket, backend="azure_storage", endpoint=azurite.account_url
                ),
                AzureCredentials(azurite.account, azurite.key),
            ),
            "redis": (
                StorageLocation(
                    kind="redis",
                    bucket="storage",
                    backend="redis",
                    endpoint=f"redis://127.0.0.1:{redis_server.port}/0",
                ),
                RedisCredentials(None, redis_server.password),
            ),
        }
    finally:
        for stop in (gcs.stop, azurite.stop, redis_server.stop):
            with contextlib.suppress(Exception):
                stop()


async def _measure(
    location: StorageLocation, credentials: Any, layout: JobLayout, polls: int
) -> dict[str, float]:
    objects = layout.job_objects()
    for index in range(DONE):
        objects += [layout.init_object(index), layout.status_object(index, index)]
    objects += [layout.init_object(index) for index in range(DONE, DONE + RUNNING)]
    job = JobRef(
        executor_id=layout.executor_id,
        job_ids=(layout.job_id,),
        total_calls={layout.job_id: CALLS},
        storage=location,
        call_type="map",
        engine_version=layout.template.lithops_version,
    )
    async with open_status_source(location, credentials) as source:
        semaphore = asyncio.Semaphore(16)

        async def put(key: str, data: bytes) -> None:
            async with semaphore:
                await source.put(key, data)

        await asyncio.gather(*(put(k, d) for k, d in objects))
        poller = JobPoller(job)
        before = source.requests
        first = await poller.poll(source)
        cold = source.requests - before
        assert first.done == DONE, (location.kind, first.done)
        requests, cpu, wall = [], [], []
        for _ in range(polls):
            before, cpu0, wall0 = source.requests, time.process_time(), time.perf_counter()
            outcome = await poller.poll(source)
            cpu.append(time.process_time() - cpu0)
            wall.append(time.perf_counter() - wall0)
            requests.append(source.requests - before)
            assert outcome.done == DONE and outcome.new_done == 0
    return {
        "cold": cold,
        "requests": sum(requests) / len(requests),
        "cpu_ms": 1000 * median(cpu),
        "wall_ms": 1000 * median(wall),
    }


def _fmt(figures: dict[str, float]) -> str:
    return f"{figures['requests']:.2f} req, {figures['cpu_ms']:.1f} ms CPU, {figures['wall_ms']:.1f} ms wall"


LABELS = {"gcs": "GCS (fake-gcs-server)", "azure": "Azure Blob (Azurite)", "redis": "Redis (redis-server)"}


def run(ctx: Context) -> BenchResult:
    result = BenchResult(NAME)
    polls = 5 if ctx.quick else 20
    template = ctx.status_template()
    figures: dict[str, dict[str, float]] = {}
    with _servers(ctx) as storages:
        for kind, (location, credentials) in storages.items():
            layout = JobLayout(template, CALLS, seed=len(figures))
            figures[kind] = asyncio.run(_measure(location, credentials, layout, polls))
    s3 = figures["s3"]
    for key, kind in (("8a", "gcs"), ("8b", "azure"), ("8c", "redis")):
        mine = figures[kind]
        result.rows.append(
            Row(
                key=key,
                what=f"{LABELS[kind]}: one idle poll of a {CALLS:,}-call job ({DONE} done, {RUNNING} running)",
                project=_fmt(mine),
                baseline=f"S3 (moto) {_fmt(s3)}",
                ratio=mine["cpu_ms"] / s3["cpu_ms"] if s3["cpu_ms"] else None,
                goal="≤ 3 requests and ≤ 2x S3's CPU per idle poll",
                met=mine["requests"] <= 3 and mine["cpu_ms"] <= 2 * s3["cpu_ms"],
                note="ratio = client CPU ÷ S3's; median of "
                f"{polls} idle polls; requests: the source's own count",
            )
        )
    result.notes.append(
        "first (cold) poll, requests: "
        + ", ".join(f"{kind} {figures[kind]['cold']:.0f}" for kind in ("s3", "gcs", "azure", "redis"))
        + " (it reads the 100 status.json once: GETs, or Redis GETs one by one)"
    )
    result.notes.append(
        "Redis counts round trips: an idle poll is SMEMBERS of the job directory (one member per "
        "call started), one pipeline of SMEMBERS over the directories of calls not yet finished, "
        "one pipeline of OBJECT IDLETIME over their objects (the .init write times)"
    )
    result.notes.append(
        "7b ✗: an Azure listing costs ~0.2 ms of client CPU per blob in azure-storage-blob's generated "
        "XML deserializer (about 50 properties mapped per blob; cProfile: 52,550 key lookups for "
        "1,000 blobs), which the poller then reduces to a name and a time. The SDK's own "
        "list_blob_names skips it through private helpers; a names-and-Last-Modified reader over "
        "the raw response would do the same, at the price of depending on them. Before its TLS "
        "context was built once per client, azure-core made one per request (SSL_CERT_FILE is "
        "set here): 45 ms per idle poll, now 22 ms"
    )
    return result
