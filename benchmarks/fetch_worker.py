"""This project's side of the fetch benchmark, in its own process like Lithops' side.

``python -m benchmarks.fetch_worker SPEC OUT``: fetch the results of the finished job in
SPEC with :func:`pywren_deferrable.results.afetch_results` exactly as
``execute_complete`` does (a fresh event loop, the provider's shared
client for the endpoint), and write the wall time, CPU time, request count and a digest
of the results to OUT. Only the fetch is timed (not the interpreter's start).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import time
from typing import Any

import aiohttp

from benchmarks.lithops_waiter import digest
from pywren_deferrable.call_status import parse_status
from pywren_deferrable.config import S3Credentials
from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY
from pywren_deferrable.hooks.s3_client_pool import shared_s3_client
from pywren_deferrable.job import JobRef, call_id, output_key, status_key
from pywren_deferrable.results import afetch_results
from pywren_deferrable.triggers.status import open_status_source


def fetch(job: JobRef) -> tuple[list[Any], int]:
    credentials = S3Credentials(EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY)

    async def go() -> tuple[list[Any], int]:
        async with open_status_source(job.storage, credentials) as source:
            results = await afetch_results(source, job)
            return results, source.requests

    return asyncio.run(go())  # what the provider's run_sync does on a worker without a loop


def fetch_presigned(job: JobRef, concurrency: int = 64) -> tuple[list[Any], int]:
    """The change proposed for ``afetch_results`` (measured here, not in the package): sign
    each GET with the same aiobotocore client (``generate_presigned_url``, no request
    sent) and send them through one plain aiohttp session, skipping botocore's per-request
    machinery (events, endpoint rules, user agent, response parsing)."""
    credentials = S3Credentials(EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY)
    job_id = job.result_job_id
    calls = [call_id(i) for i in range(job.total_calls[job_id])]

    async def go() -> tuple[list[Any], int]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with (
            shared_s3_client(endpoint=job.storage.endpoint, region=None, credentials=credentials) as client,
            aiohttp.ClientSession(connector=connector) as http,
        ):
            semaphore = asyncio.Semaphore(concurrency)

            async def get(key: str) -> bytes:
                url = await client.generate_presigned_url(
                    "get_object", Params={"Bucket": job.storage.bucket, "Key": key}, ExpiresIn=600
                )
                async with semaphore, http.get(url) as response:
                    response.raise_for_status()
                    return await response.read()

            async def result(call: str) -> Any:
                status = parse_status(await get(status_key(job.executor_id, job_id, call)), call)
                if status.failed:
                    raise RuntimeError(f"call {call} failed")
                if status.inline_result is not None:
                    return pickle.loads(status.inline_result)
                if status.has_output_object:
                    return pickle.loads(await get(output_key(job.executor_id, job_id, call)))
                return None

            results = list(await asyncio.gather(*(result(c) for c in calls)))
            return results, len(calls)

    return asyncio.run(go())


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    job = JobRef.from_dict(spec["job"])
    wall, cpu = time.perf_counter(), time.process_time()
    results, requests = fetch_presigned(job) if spec.get("variant") == "presigned" else fetch(job)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump({"seconds": wall, "cpu": cpu, "requests": requests, "digest": digest(results)}, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
