"""One test's AWS account on the stand-in: the server, the keys the account knows, the
routing of Lithops' hand-built invoke, the ``lithops_default`` Connection's extra."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lithops_local_cache import private_lithops_cache

from lambda_fake import routing
from lambda_fake.server import DEFAULT_REGION, FakeLambda, prepare_account


@dataclass
class LambdaAccount:
    fake: FakeLambda
    access_key: str
    secret_key: str
    extra: dict[str, Any]

    @property
    def sentinels(self) -> list[str]:
        return [self.access_key, self.secret_key]

    def calls_invoked(self, job_id: str) -> list[str]:
        return [c for i in self.fake.invocations_of(job_id) for c in i.call_ids]


@contextlib.contextmanager
def lambda_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **section: Any
) -> Iterator[LambdaAccount]:
    """Start the stand-in, point this process's AWS settings at it (the standard
    ``AWS_ENDPOINT_URL_*`` / ``AWS_CA_BUNDLE`` for SDK clients, routing.py for Lithops'
    hand-built invoke), create the account's role and Lithops' layer."""
    private_lithops_cache(tmp_path, monkeypatch)
    access_key = "AKIA" + uuid.uuid4().hex[:16].upper()
    secret_key = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    workdir = tmp_path / "lambda"
    workdir.mkdir()
    fake = FakeLambda(credentials={access_key: secret_key}, workdir=str(workdir)).start()
    try:
        for name, value in fake.client_env().items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        routing.install(fake.routes(), fake.combined_ca_bundle)
        role = prepare_account(fake, access_key, secret_key)
        extra: dict[str, Any] = {
            "lithops": {"backend": "aws_lambda", "storage": "minio"},
            "aws": {"access_key_id": access_key, "secret_access_key": secret_key, "region": DEFAULT_REGION},
            "aws_lambda": {"execution_role": role, **section},
        }
        yield LambdaAccount(fake, access_key, secret_key, extra)
    finally:
        routing.uninstall()
        fake.stop()


def set_connection(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], login: str, password: str) -> None:
    conn = {"conn_type": "lithops", "login": login, "password": password, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", json.dumps(conn))
