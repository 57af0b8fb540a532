"""The "Lithops job data" extra link."""

from __future__ import annotations

import pytest

from pywren_deferrable.job import JobRef, StorageLocation
from pywren_deferrable.links import PyWrenJobLink, job_console_url


def job(backend: str, **storage: str) -> JobRef:
    kind = "localhost" if backend == "localhost" else "s3"
    location = StorageLocation(kind=kind, bucket="bkt", backend=backend, **storage)
    return JobRef("abc123-0", ("M000",), {"M000": 1}, location, "map", "3.8.0")


def test_default_consoles() -> None:
    assert job_console_url(job("ibm_cos", endpoint="https://s3.eu-de.x")) == (
        "https://cloud.ibm.com/objectstorage/buckets?bucket=bkt&prefix=lithops.jobs/abc123-0-M000/"
    )
    assert job_console_url(job("aws_s3", region="eu-west-1")) == (
        "https://s3.console.aws.amazon.com/s3/buckets/bkt?region=eu-west-1&prefix=lithops.jobs/abc123-0-M000/"
    )
    assert job_console_url(job("localhost", root="/tmp/lithops-root")) == (
        "file:///tmp/lithops-root/bkt/lithops.jobs/abc123-0-M000/"
    )
    assert job_console_url(job("minio", endpoint="http://127.0.0.1:9000")) is None


def test_template_from_the_connection() -> None:
    url = job_console_url(
        job("minio", endpoint="http://127.0.0.1:9000/"), "{endpoint}/browser/{bucket}/{prefix}"
    )
    assert url == "http://127.0.0.1:9000/browser/bkt/lithops.jobs/abc123-0-M000/"
    with pytest.raises(ValueError, match="console_url template"):
        job_console_url(job("minio", endpoint="http://x"), "{nope}")


def test_operators_declare_the_link() -> None:
    from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator

    for operator in (PyWrenMapOperator, PyWrenMapReduceOperator, PyWrenCallAsyncOperator):
        assert [link.name for link in operator.operator_extra_links] == ["Lithops job data"]
    assert PyWrenJobLink().xcom_key == "_link_PyWrenJobLink"


def test_the_link_comes_from_the_operator_not_an_xcom_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3 calls get_link in the task process when the task ends; a lookup of an XCom
    that was never pushed (a storage without a console) logs an error in a healthy task."""
    from airflow.sdk.execution_time.xcom import XCom

    from pywren_deferrable import PyWrenMapOperator
    from pywren_deferrable.links import JOB_URL_ATTRIBUTE

    def no_lookup(*args: object, **kwargs: object) -> None:
        raise AssertionError("get_link must not read XCom")

    monkeypatch.setattr(XCom, "get_value", no_lookup)
    op = PyWrenMapOperator(task_id="t", map_function=abs, map_iterdata=[1])
    assert PyWrenJobLink().get_link(op, ti_key=None) == ""  # no job yet: no link, no lookup
    setattr(op, JOB_URL_ATTRIBUTE, "https://console/x")
    assert PyWrenJobLink().get_link(op, ti_key=None) == "https://console/x"


def test_a_resumed_operator_learns_its_link_from_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from pywren_deferrable import PyWrenMapOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_LITHOPS_DEFAULT",
        json.dumps({"conn_type": "lithops", "extra": {"console_url": "{endpoint}/b/{bucket}/{prefix}"}}),
    )
    op = PyWrenMapOperator(task_id="t", map_function=abs, map_iterdata=[1])
    op.remember_link_from_event({"status": "success", "job": job("minio", endpoint="http://e").to_dict()})
    assert PyWrenJobLink().get_link(op, ti_key=None) == "http://e/b/bkt/lithops.jobs/abc123-0-M000/"
    op.remember_link_from_event({"status": "error", "job": {"executor_id": "../x"}})
    assert PyWrenJobLink().get_link(op, ti_key=None) == ""
