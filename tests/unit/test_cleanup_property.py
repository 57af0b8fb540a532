"""clean_data deletes exactly the job's own objects, whatever else is in the bucket (both engines' layouts)."""

from __future__ import annotations

import asyncio
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywren_deferrable.job import ENGINE_LITHOPS, ENGINE_PYWREN, JobRef, StorageLocation
from pywren_deferrable.job import call_id as call_id_of
from pywren_deferrable.results import aclean_job
from pywren_deferrable.triggers.status import LocalStatusSource

BUCKET = "bucket"
executor_ids = st.builds(
    lambda h, n: f"{h}-{n}", st.text("0123456789abcdef", min_size=6, max_size=6), st.integers(0, 120)
)
job_ids = st.builds(lambda k, n: f"{k}{n:03d}", st.sampled_from("AMR"), st.integers(0, 12))
segment = st.text(st.characters(codec="ascii", exclude_characters="/\x00"), min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)


def neighbours(executor_id: str, job_id: str) -> list[str]:
    """Keys crafted to look like the job's without being under its prefixes."""
    return [
        f"lithops.jobs/{executor_id}-{job_id}",  # the prefix without its slash, as an object
        f"lithops.jobs/{executor_id}-{job_id}0/00000/status.json",  # a job id that extends ours
        f"lithops.jobs/{executor_id}0-{job_id}/00000/status.json",  # an executor id that extends ours
        f"lithops.jobs/{executor_id}0/x.func.pickle",
        f"lithops.jobsx/{executor_id}-{job_id}/00000/status.json",
        f"other/lithops.jobs/{executor_id}-{job_id}/00000/status.json",
        "lithops.runtimes/localhost/3.8.0/python.meta.json",
        f"pywren-deferrable/lineage/{executor_id}.json",
    ]


def localhost_job(root: str, executor_id: str, jobs: list[str], engine: str) -> JobRef:
    """A one-call-per-job JobRef of ``engine`` whose objects live in a localhost bucket."""
    return JobRef(
        executor_id,
        tuple(jobs),
        {j: 1 for j in jobs},
        StorageLocation(kind="localhost", bucket=BUCKET, backend="localhost", root=root),
        "map",
        "test",
        engine=engine,
    )


def clean_and_check(root: str, job: JobRef, own: set[str], others: set[str]) -> int:
    """Write ``own`` and ``others`` into a localhost bucket, clean ``job``, and check that
    exactly the ``own`` keys went; return how many were deleted."""
    others = others - own
    # A key that is also a "directory" of another key cannot exist on a filesystem
    # (nor be told apart by S3 prefixes in a sensible bucket): keep the set writable.
    everything = sorted(own | others)
    writable = [k for k in everything if not any(o.startswith(k + "/") for o in everything)]
    for key in writable:
        path = os.path.join(root, BUCKET, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"x")
    deleted = asyncio.run(aclean_job(LocalStatusSource(root, BUCKET), job))
    remaining = {
        os.path.relpath(os.path.join(d, f), os.path.join(root, BUCKET)).replace(os.sep, "/")
        for d, _, files in os.walk(os.path.join(root, BUCKET))
        for f in files
    }
    assert remaining == {k for k in writable if k in others}
    assert deleted == len([k for k in writable if k in own])
    return deleted


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    executor_id=executor_ids,
    jobs=st.lists(job_ids, min_size=1, max_size=3, unique=True),
    other_executor=executor_ids,
    extra_keys=st.lists(st.lists(segment, min_size=1, max_size=4).map("/".join), max_size=15),
    own_tails=st.lists(st.lists(segment, min_size=1, max_size=3).map("/".join), min_size=1, max_size=5),
)
def test_clean_deletes_exactly_the_jobs_keys(
    executor_id, jobs, other_executor, extra_keys, own_tails
) -> None:
    with tempfile.TemporaryDirectory() as root:
        job = localhost_job(root, executor_id, jobs, ENGINE_LITHOPS)
        own = {f"{p}{tail}" for p in job.prefixes() for tail in own_tails}
        others = set(extra_keys) | {k for j in jobs for k in neighbours(executor_id, j)}
        if other_executor != executor_id:
            others |= {f"lithops.jobs/{other_executor}-{j}/00000/status.json" for j in jobs}
        clean_and_check(root, job, own, others)


# -- property: cleanup deletes exactly a pywren job's keys --------------------------------

pywren_executor_ids = st.builds(
    lambda h, n: f"{h}/{n}", st.text("0123456789abcdef", min_size=6, max_size=6), st.integers(0, 120)
)


def pywren_neighbours(executor_id: str, job_id: str) -> list[str]:
    """Keys crafted to look like a pywren job's without being under its prefixes."""
    session, counter = executor_id.split("/")
    return [
        f"pywren.jobs/{executor_id}/{job_id}",  # the prefix without its slash, as an object
        f"pywren.jobs/{executor_id}/{job_id}0/00000/status.json",  # a job id that extends ours
        f"pywren.jobs/{executor_id}0/{job_id}/00000/status.json",  # an executor that extends ours
        f"pywren.jobs/{session}/{int(counter) + 1}/{job_id}/00000/status.json",  # next executor
        f"pywren.jobs/{executor_id}/x.func.pickle",  # pywren has no executor-level objects
        f"pywren.jobsx/{executor_id}/{job_id}/00000/status.json",
        f"other/pywren.jobs/{executor_id}/{job_id}/00000/status.json",
        f"lithops.jobs/{session}-{counter}-{job_id}/00000/status.json",  # the Lithops look-alike
        f"lithops.jobs/{session}-{counter}/x.func.pickle",
        f"pywren-deferrable/lineage/{session}.json",
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    executor_id=pywren_executor_ids,
    jobs=st.lists(job_ids, min_size=1, max_size=3, unique=True),
    sibling=job_ids,
    other_executor=pywren_executor_ids,
    extra_keys=st.lists(st.lists(segment, min_size=1, max_size=4).map("/".join), max_size=15),
    own_tails=st.lists(st.lists(segment, min_size=1, max_size=3).map("/".join), min_size=1, max_size=5),
)
def test_clean_deletes_exactly_the_pywren_jobs_keys(
    executor_id: str,
    jobs: list[str],
    sibling: str,
    other_executor: str,
    extra_keys: list[str],
    own_tails: list[str],
) -> None:
    with tempfile.TemporaryDirectory() as root:
        job = localhost_job(root, executor_id, jobs, ENGINE_PYWREN)
        tails = set(own_tails) | {"func.pickle", "aggdata.pickle", "00000/status.json", "00000/output.pickle"}
        own = {f"{p}{tail}" for p in job.prefixes() for tail in tails}
        others = set(extra_keys) | {k for j in jobs for k in pywren_neighbours(executor_id, j)}
        if sibling not in jobs:
            others |= {f"pywren.jobs/{executor_id}/{sibling}/00000/status.json"}
            others |= {f"pywren.jobs/{executor_id}/{sibling}/func.pickle"}
        if other_executor != executor_id:
            others |= {f"pywren.jobs/{other_executor}/{j}/00000/status.json" for j in jobs}
        deleted = clean_and_check(root, job, own, others)
        assert deleted >= len(jobs) * 4  # the fixed tails at least, whatever was drawn


# -- property: cleanup includes the jobs a Lithops job's calls created ---------------------

# A level of descent: the job of a call, an executor created in it ("-<call>-<counter>").
descents = st.lists(
    st.tuples(job_ids, st.integers(0, 100_500).map(call_id_of), st.integers(0, 30)), min_size=1, max_size=3
)


def descendant_executor(executor_id: str, path: list[tuple[str, str, int]]) -> str:
    """The executor id Lithops gives an executor created at the end of ``path`` (each
    step: the job and call it ran in, and its counter there)."""
    for job_id, call, counter in path:
        executor_id = f"{executor_id}-{job_id}-{call}-{counter}"
    return executor_id


def descendant_neighbours(executor_id: str, job_id: str) -> list[str]:
    """Keys that start like a descendant's but are none (the descendant prefix alone
    matches them): a cleaner that trusted the prefix would delete them."""
    base = f"lithops.jobs/{executor_id}-{job_id}-"
    return [
        f"{base}x/00000/status.json",
        f"{base}00000/status.json",  # a call id without the executor counter
        f"{base}00000-/x.func.pickle",
        f"{base}00000-1x/x.func.pickle",
        f"{base}00000-1-X000/00000/status.json",
        f"{base}0000-1/x.func.pickle",  # four digits: no call id
        f"{base}00000-1-M000-00000/x.func.pickle",  # a deeper level without its counter
        f"lithops.jobs/{executor_id}-{job_id}0-00000-1/x.func.pickle",  # a job id that extends ours
        f"lithops.jobs/{executor_id}0-{job_id}-00000-1/x.func.pickle",  # an executor that extends ours
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    executor_id=executor_ids,
    jobs=st.lists(job_ids, min_size=1, max_size=2, unique=True),
    paths=st.lists(descents, min_size=1, max_size=4),
    other_executor=executor_ids,
    extra_keys=st.lists(st.lists(segment, min_size=1, max_size=4).map("/".join), max_size=10),
)
def test_clean_deletes_the_descendant_jobs_and_nothing_else(
    executor_id: str,
    jobs: list[str],
    paths: list[list[tuple[str, str, int]]],
    other_executor: str,
    extra_keys: list[str],
) -> None:
    with tempfile.TemporaryDirectory() as root:
        job = localhost_job(root, executor_id, jobs, ENGINE_LITHOPS)
        own = {f"{p}00000/status.json" for p in job.prefixes()}
        for index, path in enumerate(paths):
            # The first step of a descent runs in one of the job's own jobs.
            path = [(jobs[index % len(jobs)], path[0][1], path[0][2]), *path[1:]]
            child = descendant_executor(executor_id, path)
            own |= {
                f"lithops.jobs/{child}/abc.func.pickle",
                f"lithops.jobs/{child}-M000/aggdata.pickle",
                f"lithops.jobs/{child}-M000/00001/status.json",
                f"lithops.jobs/{child}-R000/00000/output.pickle",
            }
        others = set(extra_keys) | {k for j in jobs for k in descendant_neighbours(executor_id, j)}
        if other_executor != executor_id:
            others |= {f"lithops.jobs/{other_executor}-{j}-00000-1/x.func.pickle" for j in jobs}
        clean_and_check(root, job, own, others)
