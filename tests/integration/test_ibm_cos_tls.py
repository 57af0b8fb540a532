"""IBM COS end to end over TLS: Lithops' own ``ibm_cos`` storage backend (on the submitting
side and in Lithops' localhost workers, where functions get the injected ``ibm_cos``
client), the trigger and the result fetcher, against a local COS stand-in served over TLS
with a test CA (``tls_cos``), with HMAC keys and with an IAM API key.

Every process trusts the test CA through ``AWS_CA_BUNDLE`` / ``REQUESTS_CA_BUNDLE`` (set
here in the test process, inherited by the localhost runner and Lithops' workers).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException
from payloads.functions import fail_on
from tls_cos import CosGateway, ca_env, ibm_cos_connection, start_gateway

from pywren_deferrable import LithopsHook, PyWrenMapOperator
from pywren_deferrable.config import build_config
from pywren_deferrable.embedded import LocalS3Server, run_dag_test
from pywren_deferrable.hooks.ibm_iam import IamAuthenticationError

pytestmark = pytest.mark.integration

E2E_DAGS = Path(__file__).resolve().parents[1] / "e2e" / "dags"
CONN_ID = "ibm_cos_tls"
API_KEY = f"APIKEY-{uuid.uuid4().hex}"
INPUT = {
    "cos-input/a.txt": "the quick brown fox\njumps over the lazy dog\n" * 6,
    "cos-input/b.txt": "lazy lazy dog\n" * 9,
}


@pytest.fixture(scope="module")
def gateway(s3_server: LocalS3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosGateway]:
    gateway = start_gateway(s3_server.endpoint, str(tmp_path_factory.mktemp("test-ca")), {API_KEY})
    yield gateway
    gateway.stop()


@pytest.fixture
def cos_bucket(s3_server: LocalS3Server, gateway: CosGateway) -> str:
    gateway.bearer_tokens.clear()
    bucket = s3_server.create_bucket(f"cos-{uuid.uuid4().hex[:12]}")
    client = s3_server.client()
    for key, text in INPUT.items():
        client.put_object(Bucket=bucket, Key=key, Body=text.encode())
    gateway.requests.clear()
    return bucket


@pytest.fixture
def trust_test_ca(monkeypatch: pytest.MonkeyPatch, gateway: CosGateway) -> None:
    for name, value in ca_env(gateway.ca.ca_file).items():
        monkeypatch.setenv(name, value)


def use_connection(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", value)


def bucket_keys(s3_server: LocalS3Server, bucket: str, prefix: str = "") -> set[str]:
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_the_trigger_side_verifies_tls_with_the_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, gateway: CosGateway, cos_bucket: str
) -> None:
    use_connection(monkeypatch, ibm_cos_connection(gateway, cos_bucket, "hmac"))
    for name in ca_env(""):
        monkeypatch.delenv(name, raising=False)
    ok, message = LithopsHook(CONN_ID).test_connection()
    assert not ok
    assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message
    for name, value in ca_env(gateway.ca.ca_file).items():
        monkeypatch.setenv(name, value)
    ok, message = LithopsHook(CONN_ID).test_connection()
    assert ok, message
    assert gateway.endpoint in message


@pytest.mark.parametrize("auth", ["hmac", "iam"])
def test_dag_over_tls(
    auth: str,
    monkeypatch: pytest.MonkeyPatch,
    trust_test_ca: None,
    gateway: CosGateway,
    cos_bucket: str,
    s3_server: LocalS3Server,
    airflow_db: str,
) -> None:
    use_connection(monkeypatch, ibm_cos_connection(gateway, cos_bucket, auth, api_key=API_KEY))
    # dag.test() serializes the DAGs of the configured DAG bundles: add the test DAGs' one.
    bundles = [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": path},
        }
        for name, path in (("dags-folder", os.environ["AIRFLOW__CORE__DAGS_FOLDER"]), ("e2e", str(E2E_DAGS)))
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    iam_requests = gateway.iam.requests
    state, results = run_dag_test(str(E2E_DAGS), "e2e_ibm_cos")
    assert state == "success", results

    # cos:// prefix in 64-byte chunks: one call per chunk, every line counted once.
    chunks = sum(math.ceil(len(text) / 64) for text in INPUT.values())
    counts = results["count_lines"]
    assert len(counts) == chunks > len(INPUT)
    assert sum(counts) == sum(text.count("\n") for text in INPUT.values())
    # The injected ibm_cos client read and wrote through the TLS endpoint.
    assert results["copy_upper"] == [len(INPUT[key]) for key in sorted(INPUT)]
    client = s3_server.client()
    for key, text in INPUT.items():
        assert (
            client.get_object(Bucket=cos_bucket, Key=f"written/{key}")["Body"].read() == text.upper().encode()
        )
    # clean_data: no call of either job left behind.
    assert not [k for k in bucket_keys(s3_server, cos_bucket, "lithops.jobs/") if "/status.json" in k]

    # Who authenticated how (every client: Lithops' and the trigger's, over TLS).
    assert gateway.count("rejected") == 0
    if auth == "hmac":
        assert gateway.count("hmac") > 0 and gateway.count("bearer") == 0
    else:
        assert gateway.count("bearer") > 0 and gateway.count("hmac") == 0
        assert gateway.iam.requests > iam_requests
        assert gateway.bearer_tokens <= set(gateway.iam.issued)


def test_failing_call_over_tls_fails_with_the_remote_traceback(
    monkeypatch: pytest.MonkeyPatch,
    trust_test_ca: None,
    gateway: CosGateway,
    cos_bucket: str,
    s3_server: LocalS3Server,
) -> None:
    use_connection(monkeypatch, ibm_cos_connection(gateway, cos_bucket, "iam", api_key=API_KEY))
    op = PyWrenMapOperator(
        task_id="t",
        lithops_conn_id=CONN_ID,
        map_function=fail_on,
        map_iterdata=[1, 2, 3],
        extra_params={"bad": 2},
        clean_data=True,
        # Every call ends before the cleanup (with fail_fast a call still running could
        # write its status after it: docs/failure-modes.md).
        fail_fast=False,
        deferrable=False,
    )
    with pytest.raises(AirflowException) as failure:
        op.execute({"ti": _FakeTI()})
    message = str(failure.value)
    assert "M000/00001" in message
    assert "Traceback (most recent call last)" in message
    assert "ValueError: boom on 2" in message
    assert not [k for k in bucket_keys(s3_server, cos_bucket, "lithops.jobs/") if "/status.json" in k]
    assert gateway.count("rejected") == 0 and gateway.count("bearer") > 0


def test_a_key_iam_rejects_fails_at_submit(
    monkeypatch: pytest.MonkeyPatch, trust_test_ca: None, gateway: CosGateway, cos_bucket: str
) -> None:
    bad_key = f"BAD-{uuid.uuid4().hex}"
    use_connection(monkeypatch, ibm_cos_connection(gateway, cos_bucket, "iam", api_key=bad_key))
    op = PyWrenMapOperator(
        task_id="t", lithops_conn_id=CONN_ID, map_function=fail_on, map_iterdata=[1], deferrable=False
    )
    with pytest.raises(IamAuthenticationError) as info:
        op.execute({"ti": _FakeTI()})
    assert "rejected the API key" in str(info.value)
    assert bad_key not in str(info.value)
    assert gateway.count("bearer") == 0 and gateway.count("hmac") == 0  # nothing reached COS


class _FakeTI:
    dag_id, run_id, task_id, map_index, try_number = "dag", "run-1", "t", -1, 1

    def xcom_pull(self, task_ids: str) -> Any:
        raise KeyError(task_ids)


@pytest.mark.parametrize("key_field", ["api_key", "iam_api_key"])
def test_lithops_own_token_managers_get_their_tokens_from_the_iam_stand_in(
    key_field: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    trust_test_ca: None,
    gateway: CosGateway,
    cos_bucket: str,
) -> None:
    """Without a token from the provider (a function whose token is near its expiry renews
    it this way), Lithops' token managers (ibm_botocore's for ``api_key``, ibm-cloud-sdk-core's
    for ``iam_api_key``) ask the public IAM endpoint, which they cannot be told otherwise:
    through the gateway's proxy that name reaches the IAM stand-in, so the same stand-in
    serves Lithops and the trigger."""
    from lithops import Storage
    from lithops.util import ibm_token_manager

    for manager in (ibm_token_manager.COSTokenManager, ibm_token_manager.IAMTokenManager):
        monkeypatch.setattr(manager, "TOKEN_FILE", str(tmp_path / manager.TYPE / "token"))
    monkeypatch.setenv("HTTPS_PROXY", gateway.proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    conn = json.loads(ibm_cos_connection(gateway, cos_bucket, "iam", api_key=API_KEY))
    section = conn["extra"]["ibm_cos"]
    section[key_field] = section.pop("api_key")
    del section["iam_endpoint"]  # Lithops has no such setting: its managers ask the public name
    config = build_config(conn["extra"])
    issued = len(gateway.iam.issued)

    storage = Storage(config=config)
    assert sorted(storage.list_keys(cos_bucket, "cos-input/")) == sorted(INPUT)
    storage.put_object(cos_bucket, "lithops-wrote", b"ok")
    assert storage.get_object(cos_bucket, "lithops-wrote") == b"ok"

    assert gateway.tunnels >= 1 and gateway.tunnels_refused == 0
    assert len(gateway.iam.issued) == issued + 1
    assert gateway.bearer_tokens == {gateway.iam.issued[-1]}
    assert gateway.count("bearer") >= 3 and gateway.count("hmac") == gateway.count("rejected") == 0
    # Lithops cached the token where it always does (here, the test's directory).
    assert (tmp_path / ("COS" if key_field == "api_key" else "IAM") / "token").exists()
