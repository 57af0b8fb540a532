"""The operators' extra link: where a user follows the job's objects in a storage console."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

from pywren_deferrable.job import JobRef

# Consoles that can show a bucket prefix from the bucket name alone. Anything else (MinIO,
# Ceph, a private COS endpoint...) gets the Connection's ``console_url`` template.
DEFAULT_CONSOLE_URLS = {
    "ibm_cos": "https://cloud.ibm.com/objectstorage/buckets?bucket={bucket}&prefix={prefix}",
    "aws_s3": "https://s3.console.aws.amazon.com/s3/buckets/{bucket}?region={region}&prefix={prefix}",
    "localhost": "file://{root}/{bucket}/{prefix}",
}


def job_console_url(job: JobRef, template: str | None = None) -> str | None:
    """The console URL of the job's (first) prefix, from ``template`` or the backend's default.

    ``template`` may use ``{bucket}``, ``{prefix}``, ``{endpoint}``, ``{region}``, ``{root}``
    and ``{executor_id}``.
    """
    template = template or DEFAULT_CONSOLE_URLS.get(job.storage.backend)
    if not template:
        return None
    values: dict[str, Any] = {
        "bucket": job.storage.bucket,
        "prefix": job.job_prefix(job.job_ids[0]),
        "endpoint": (job.storage.endpoint or "").rstrip("/"),
        "region": job.storage.region or "",
        "root": (job.storage.root or "").rstrip("/"),
        "executor_id": job.executor_id,
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"the Connection's console_url template {template!r} is invalid: {err}") from None


# The operator attribute that holds its job's console URL once the job is known.
JOB_URL_ATTRIBUTE = "lithops_job_url"


class PyWrenJobLink(BaseOperatorLink):
    """ "Lithops job data": the job's prefix in the storage console.

    The UI reads the URL from XCom (under :attr:`xcom_key`). The operator pushes it when
    it submits the job, so the link is there while the task is deferred; when the task
    ends, Airflow 3 calls :meth:`get_link` in the task process and pushes its value under
    the same key. The operator knows its job's URL by then (see :data:`JOB_URL_ATTRIBUTE`),
    so nothing is read back from XCom: a lookup of a key that was never pushed (a storage
    without a console) logs an error line in every healthy task's log.
    """

    name = "Lithops job data"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = getattr(operator, JOB_URL_ATTRIBUTE, None)
        return url if isinstance(url, str) else ""
