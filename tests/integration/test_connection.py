"""LithopsHook.test_connection against the real local S3 endpoint."""

from __future__ import annotations

import json

import pytest

from pywren_deferrable.embedded import LocalS3Server, embedded_connection
from pywren_deferrable.hooks.lithops import LithopsHook

pytestmark = pytest.mark.integration


def test_reachable_bucket(lithops_conn: str, bucket: str) -> None:
    ok, message = LithopsHook().test_connection()
    assert ok, message
    assert f"storage bucket {bucket!r} reachable" in message


def test_missing_bucket(monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(embedded_connection(s3_server.endpoint, "no-such-bkt"))
    )
    ok, message = LithopsHook().test_connection()
    assert not ok
    assert "NoSuchBucket" in message
