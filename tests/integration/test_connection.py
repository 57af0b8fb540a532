"""LithopsHook.test_connection against the real local S3 endpoint."""

from __future__ import annotations

import json

import pytest

from pywren_deferrable.embedded import LocalS3Server, embedded_connection, embedded_pywren_connection
from pywren_deferrable.hooks.lithops import LithopsHook

pytestmark = pytest.mark.integration


@pytest.mark.engines
def test_reachable_bucket(lithops_conn: str, bucket: str, engine: str) -> None:
    ok, message = LithopsHook().test_connection()
    assert ok, message
    assert f"storage bucket {bucket!r} reachable" in message
    assert f"{engine} compute backend 'localhost' configured" in message


@pytest.mark.engines
def test_missing_bucket(monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server, engine: str) -> None:
    connection = embedded_pywren_connection if engine == "pywren" else embedded_connection
    monkeypatch.setenv(
        "AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(connection(s3_server.endpoint, "no-such-bkt"))
    )
    ok, message = LithopsHook().test_connection()
    assert not ok
    assert "NoSuchBucket" in message
