"""IBM COS with an IAM API key: the token the provider hands Lithops at submit, obtained
from the Connection's IAM endpoint (Lithops' ibm_cos config has no IAM endpoint setting)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from ibm_iam_fakes import FakeIam, serve

from pywren_deferrable.config import build_config
from pywren_deferrable.hooks import ibm_iam
from pywren_deferrable.hooks.ibm_iam import (
    IamAuthenticationError,
    give_lithops_an_iam_token,
    lithops_token_fields,
)

IAM_URL = "https://iam.example/identity/token"


def ibm_cos_config(**section: Any) -> dict[str, Any]:
    extra = {
        "lithops": {"backend": "localhost", "storage": "ibm_cos"},
        "ibm_cos": {"endpoint": "https://cos.example", "storage_bucket": "b", **section},
    }
    return build_config(extra)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    seen: list[tuple[str, str | None]] = []

    def fake(api_key: str, endpoint: str | None = None) -> dict[str, Any]:
        seen.append((api_key, endpoint))
        return {"token": "tok", "token_expiry_time": 123}

    monkeypatch.setattr(ibm_iam, "lithops_token_fields", fake)
    return seen


def test_api_key_config_gets_a_token_from_its_iam_endpoint(calls: list[tuple[str, str | None]]) -> None:
    config = ibm_cos_config(api_key="KEY", iam_endpoint=IAM_URL, service_instance_id="crn")
    give_lithops_an_iam_token(config)
    assert calls == [("KEY", IAM_URL)]
    assert config["ibm_cos"]["token"] == "tok" and config["ibm_cos"]["token_expiry_time"] == 123


def test_key_from_the_ibm_section_counts(calls: list[tuple[str, str | None]]) -> None:
    config = ibm_cos_config(service_instance_id="crn")
    config["ibm"] = {"iam_api_key": "IBMKEY"}
    give_lithops_an_iam_token(config)
    assert calls == [("IBMKEY", None)]  # None: the public IAM endpoint


def test_nothing_to_do(calls: list[tuple[str, str | None]]) -> None:
    hmac = ibm_cos_config(api_key="KEY", access_key_id="A", secret_access_key="S")
    has_token = ibm_cos_config(api_key="KEY", token="given")
    minio = build_config({"lithops": {"storage": "minio"}, "minio": {"endpoint": "http://127.0.0.1:1"}})
    pywren = {"pywren": {"storage_backend": "ibm_cos"}}
    for config in (hmac, has_token, minio, pywren):
        give_lithops_an_iam_token(config)
    assert calls == []
    assert has_token["ibm_cos"]["token"] == "given"
    assert "token" not in hmac["ibm_cos"]


async def test_token_fields_come_from_iam_with_an_epoch_expiry() -> None:
    key = f"APIKEY-{uuid.uuid4().hex}"
    iam = FakeIam(valid_keys={key}, expires_in=3600)
    async with serve(iam) as base:
        before = time.time()
        fields = await asyncio.to_thread(lithops_token_fields, key, base)  # bare base URL
        assert fields["token"] == iam.issued[-1]
        # Lithops reads token_expiry_time as epoch seconds and reuses the token while more
        # than 20 minutes are left: a fresh token has its whole hour.
        assert before + 3590 <= fields["token_expiry_time"] <= time.time() + 3600
        with pytest.raises(IamAuthenticationError) as info:
            await asyncio.to_thread(lithops_token_fields, "BAD-" + key, base)
        assert key not in str(info.value)
