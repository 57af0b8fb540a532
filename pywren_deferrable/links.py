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


class PyWrenJobLink(BaseOperatorLink):
    """ "Lithops job data": the job's prefix in the storage console.

    The operator stores the URL in XCom (under :attr:`xcom_key`) when it submits the job;
    Airflow 3 reads it from there.
    """

    name = "Lithops job data"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return value if isinstance(value, str) else ""
