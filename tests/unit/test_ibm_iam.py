"""IBM Cloud IAM token manager against a local IAM stand-in (aiohttp on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ibm_iam_fakes import FakeClock, FakeIam, serve

from pywren_deferrable.config import S3Credentials, build_lithops_config, s3_credentials
from pywren_deferrable.hooks.ibm_iam import (
    DEFAULT_IAM_ENDPOINT,
    IamAuthenticationError,
    IamTokenManager,
    IamUnavailableError,
    normalize_iam_endpoint,
    shared_token_manager,
)
from pywren_deferrable.hooks.s3_client_pool import _pool_key

LIFETIME = 3600


@pytest.fixture
def api_key() -> str:
    return f"KEY-{uuid.uuid4().hex}"


@pytest.fixture
async def iam(api_key: str) -> AsyncIterator[tuple[FakeIam, str]]:
    fake = FakeIam(valid_keys={api_key}, expires_in=LIFETIME)
    async with serve(fake) as url:
        yield fake, url + "/identity/token"


def manager(api_key: str, url: str, clock: FakeClock | None = None, **kwargs: Any) -> IamTokenManager:
    return IamTokenManager(api_key, url, clock=clock or FakeClock(), backoff=0.001, **kwargs)


async def wait_for(predicate, timeout_polls: int = 2000) -> None:  # type: ignore[no-untyped-def]
    for _ in range(timeout_polls):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def test_concurrent_users_share_one_token_request(iam: tuple[FakeIam, str], api_key: str) -> None:
    fake, url = iam
    fake.gate = asyncio.Event()  # hold the first request open while everybody else asks
    tokens = manager(api_key, url)
    users = [asyncio.create_task(tokens.get_token()) for _ in range(50)]
    await wait_for(lambda: fake.requests >= 1)
    for _ in range(20):
        await asyncio.sleep(0)
    fake.gate.set()
    values = await asyncio.gather(*users)
    assert fake.requests == 1
    assert set(values) == {fake.issued[0]}
    # Served from the cache afterwards.
    assert await tokens.get_token() == fake.issued[0]
    assert fake.requests == 1


async def test_token_is_refreshed_before_expiry(iam: tuple[FakeIam, str], api_key: str) -> None:
    fake, url = iam
    clock = FakeClock()
    tokens = manager(api_key, url, clock)
    first = await tokens.token()
    assert first.generation == 1
    clock.advance(0.79 * LIFETIME)  # more than 20 % of the lifetime left: cached
    assert (await tokens.token()).value == first.value
    assert fake.requests == 1
    clock.advance(0.02 * LIFETIME)  # less than 20 % left, still valid: renewed now
    second = await tokens.token()
    assert fake.requests == 2
    assert second.value != first.value
    assert second.generation == 2
    assert second.expires_at == pytest.approx(clock.now + LIFETIME)


async def test_short_lived_tokens_follow_their_own_lifetime(api_key: str) -> None:
    fake = FakeIam(valid_keys={api_key}, expires_in=3)
    clock = FakeClock()
    async with serve(fake) as base:
        tokens = manager(api_key, base, clock)  # base URL: /identity/token is appended
        await tokens.get_token()
        clock.advance(2.3)
        await tokens.get_token()
        assert fake.requests == 1
        clock.advance(0.2)  # 2.5 s of 3: less than 20 % left
        await tokens.get_token()
        assert fake.requests == 2


async def test_bad_key_gives_a_clear_error_without_the_key(
    iam: tuple[FakeIam, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = iam
    fake.echo_key = True  # even an IAM that echoes the key must not leak it
    bad_key = f"BAD-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    tokens = manager(bad_key, url)
    with pytest.raises(IamAuthenticationError) as info:
        await tokens.get_token()
    message = str(info.value)
    assert "rejected the API key" in message
    assert "HTTP 400" in message and "BXNIM0415E" in message
    assert bad_key not in message
    assert bad_key not in repr(info.value)
    assert bad_key not in caplog.text
    assert bad_key not in repr(tokens)
    assert fake.requests == 1  # a rejected key is not retried
    assert not isinstance(info.value, OSError)  # the trigger must not treat it as an outage


async def test_transient_iam_failures_are_retried(
    iam: tuple[FakeIam, str], api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = iam
    fake.fail_next = [500, 503, 429]
    caplog.set_level(logging.DEBUG)
    tokens = manager(api_key, url)
    token = await tokens.get_token()
    assert fake.requests == 4
    assert token == fake.issued[0]
    assert "attempt 3/4" in caplog.text
    assert api_key not in caplog.text
    assert token not in caplog.text
    assert token not in repr(tokens) and token not in repr(await tokens.token())


async def test_iam_outage_is_a_transient_error(iam: tuple[FakeIam, str], api_key: str) -> None:
    from pywren_deferrable.triggers.job import is_transient

    fake, url = iam
    fake.fail_next = [500] * 10
    tokens = manager(api_key, url, max_attempts=3)
    with pytest.raises(IamUnavailableError) as info:
        await tokens.get_token()
    assert fake.requests == 3
    assert is_transient(info.value)
    assert api_key not in str(info.value)


async def test_unreachable_iam_is_a_transient_error(api_key: str) -> None:
    fake = FakeIam(valid_keys={api_key})
    async with serve(fake) as base:
        pass  # the port is closed again
    tokens = manager(api_key, base, max_attempts=2)
    with pytest.raises(IamUnavailableError, match="after 2 attempts"):
        await tokens.get_token()


async def test_waiters_share_a_failed_refresh(iam: tuple[FakeIam, str], api_key: str) -> None:
    fake, url = iam
    fake.fail_next = [500] * 100
    fake.gate = asyncio.Event()
    tokens = manager(api_key, url, max_attempts=2)
    users = [asyncio.create_task(tokens.get_token()) for _ in range(20)]
    await wait_for(lambda: fake.requests >= 1)
    for _ in range(20):
        await asyncio.sleep(0)
    fake.gate.set()
    results = await asyncio.gather(*users, return_exceptions=True)
    assert all(isinstance(r, IamUnavailableError) for r in results)
    assert fake.requests == 2  # one refresh (two attempts), not one per waiter


async def test_failed_refresh_keeps_the_still_valid_token(
    iam: tuple[FakeIam, str], api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = iam
    clock = FakeClock()
    tokens = manager(api_key, url, clock, max_attempts=2)
    first = await tokens.get_token()
    clock.advance(0.9 * LIFETIME)
    fake.fail_next = [500] * 10
    caplog.set_level(logging.WARNING)
    assert await tokens.get_token() == first  # IAM down, token still valid for 6 min
    assert "stays in use" in caplog.text
    clock.advance(0.1 * LIFETIME)  # now expired
    with pytest.raises(IamUnavailableError):
        await tokens.get_token()
    fake.fail_next = []
    assert await tokens.get_token() == fake.issued[-1] != first


async def test_invalidate_drops_only_the_rejected_generation(iam: tuple[FakeIam, str], api_key: str) -> None:
    fake, url = iam
    tokens = manager(api_key, url)
    first = await tokens.token()
    assert tokens.invalidate(first.generation)
    second = await tokens.token()
    assert second.generation == 2 and fake.requests == 2
    assert not tokens.invalidate(first.generation)  # a late rejection of the old token
    assert (await tokens.token()).value == second.value
    assert fake.requests == 2


async def test_iam_answer_without_token_is_an_error(api_key: str) -> None:
    class Broken(FakeIam):
        async def handle(self, request):  # type: ignore[no-untyped-def]
            from aiohttp import web

            self.requests += 1
            return web.json_response({"token_type": "Bearer"})

    fake = Broken(valid_keys={api_key})
    async with serve(fake) as base:
        with pytest.raises(Exception, match="without an access_token"):
            await manager(api_key, base).get_token()


def test_endpoint_normalization() -> None:
    assert normalize_iam_endpoint(None) == DEFAULT_IAM_ENDPOINT == "https://iam.cloud.ibm.com/identity/token"
    assert normalize_iam_endpoint("https://private.iam.cloud.ibm.com") == (
        "https://private.iam.cloud.ibm.com/identity/token"
    )
    assert normalize_iam_endpoint("https://iam.example/custom/token") == "https://iam.example/custom/token"
    assert normalize_iam_endpoint("http://127.0.0.1:9/identity/token") == "http://127.0.0.1:9/identity/token"
    with pytest.raises(ValueError, match="plain http"):
        normalize_iam_endpoint("http://iam.cloud.ibm.com")
    with pytest.raises(ValueError):
        IamTokenManager("")


def test_shared_manager_per_key_and_endpoint() -> None:
    key_a, key_b = uuid.uuid4().hex, uuid.uuid4().hex
    assert shared_token_manager(key_a) is shared_token_manager(key_a, DEFAULT_IAM_ENDPOINT)
    assert shared_token_manager(key_a) is not shared_token_manager(key_b)
    assert shared_token_manager(key_a) is not shared_token_manager(key_a, "https://private.iam.cloud.ibm.com")
    assert key_a not in repr(shared_token_manager(key_a))


# --- config: S3Credentials / s3_credentials ---------------------------------------------


def test_s3_credentials_ibm_cos_api_key() -> None:
    config = {
        "lithops": {"storage": "ibm_cos"},
        "ibm_cos": {"region": "eu-de", "api_key": "APIKEY123", "service_instance_id": "crn:v1:x"},
    }
    creds = s3_credentials(config)
    assert creds == S3Credentials(None, None, iam_api_key="APIKEY123", service_instance_id="crn:v1:x")
    assert "APIKEY123" not in repr(creds) and "APIKEY123" not in str(creds)
    assert repr(creds) == "S3Credentials(access_key_id=None, iam_api_key=***)"


def test_s3_credentials_iam_api_key_from_ibm_section() -> None:
    config = build_lithops_config(
        {
            "lithops": {"backend": "code_engine", "storage": "ibm_cos"},
            "ibm": {"iam_api_key": "IBMKEY", "iam_endpoint": "https://private.iam.cloud.ibm.com"},
            "ibm_cos": {"region": "eu-de", "storage_bucket": "b"},
        }
    )
    creds = s3_credentials(config)
    assert creds.iam_api_key == "IBMKEY"
    assert creds.iam_endpoint == "https://private.iam.cloud.ibm.com"
    assert creds.access_key_id is None


def test_s3_credentials_ibm_cos_api_key_wins_over_ibm_section() -> None:
    config = {
        "lithops": {"storage": "ibm_cos"},
        "ibm": {"iam_api_key": "IBMKEY"},
        "ibm_cos": {"api_key": "COSKEY"},
    }
    assert s3_credentials(config).iam_api_key == "COSKEY"


def test_s3_credentials_hmac_wins_over_api_key() -> None:
    config = build_lithops_config(
        {"lithops": {"backend": "code_engine", "storage": "ibm_cos"}, "ibm": {"iam_api_key": "k"}},
        login="HMACID",
        password="HMACSECRET",
    )
    assert s3_credentials(config) == S3Credentials("HMACID", "HMACSECRET", None)


def test_api_key_is_ignored_for_other_storages() -> None:
    config = {"lithops": {"storage": "minio"}, "minio": {"api_key": "k"}, "ibm": {"iam_api_key": "k"}}
    assert s3_credentials(config).iam_api_key is None


async def test_pool_key_separates_iam_and_hmac_and_hides_the_key() -> None:
    iam = S3Credentials(None, None, iam_api_key="SECRETAPIKEY")
    other = S3Credentials(None, None, iam_api_key="OTHERAPIKEY")
    hmac = S3Credentials(None, None)
    keys = {_pool_key("https://cos", "eu-de", c) for c in (iam, other, hmac)}
    assert len(keys) == 3
    assert "SECRETAPIKEY" not in repr(_pool_key("https://cos", "eu-de", iam))
    private = S3Credentials(None, None, iam_api_key="SECRETAPIKEY", iam_endpoint="https://private.iam")
    assert _pool_key("https://cos", "eu-de", private) != _pool_key("https://cos", "eu-de", iam)
