"""The trigger-side dispatcher against the OpenWhisk-API stand-in, call by call.

A trivial action (no Lithops: these tests are about the invocations, not the worker) and
the job's objects in Lithops' localhost storage layout on disk. The poll results are
built here, so that each test decides which calls have ended.
"""

from __future__ import annotations

import base64
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dispatch_bed import DispatchBed, ids
from openwhisk_fake import FakeOpenWhisk

from pywren_deferrable.dispatch.dispatcher import Dispatcher
from pywren_deferrable.dispatch.errors import DispatchError, DispatchRefused

pytestmark = pytest.mark.integration

PACKAGE, ACTION = "lithops_test", "noop_256MB"
MAX_WORKERS = 2
DIRECT = 2
PENDING = 5
TOTAL = DIRECT + PENDING


class Setup(DispatchBed):
    backend = "openwhisk"

    def __init__(self, fake: FakeOpenWhisk, api_key: str, namespace: str, root: Path) -> None:
        super().__init__(root, max_workers=MAX_WORKERS, direct=DIRECT, pending=PENDING)
        self.fake, self.api_key, self.namespace = fake, api_key, namespace

    def connection_config(self, api_key: str | None = None) -> dict[str, Any]:
        return {
            "lithops": {"backend": "openwhisk", "storage": "localhost"},
            "openwhisk": {
                "endpoint": self.fake.endpoint,
                "namespace": self.namespace,
                "api_key": api_key or self.api_key,
            },
        }

    def target(self) -> dict[str, Any]:
        return {
            "endpoint": self.fake.endpoint,
            "namespace": self.namespace,
            "package": PACKAGE,
            "action": ACTION,
            "auth": {"kind": "basic", "config_path": ["openwhisk", "api_key"]},
        }

    def dispatcher(self, api_key: str | None = None, max_outage: float = 60.0) -> Dispatcher:
        async def get_config() -> dict[str, Any]:
            return self.connection_config(api_key)

        return self.dispatcher_with(get_config, max_outage)

    def invoked(self) -> list[str]:
        return [c for a in self.fake.activations.values() for c in a.call_ids]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    api_key = f"{uuid.uuid4()}:{uuid.uuid4().hex}"
    (tmp_path / "ow").mkdir()
    fake = FakeOpenWhisk(api_keys={api_key: namespace}, workdir=str(tmp_path / "ow"))
    fake.start()
    base = f"{fake.endpoint}/api/v1/namespaces/{namespace}"
    auth = tuple(api_key.split(":", 1))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("__main__.py", "def main(args):\n    return {'calls': args.get('call_ids')}\n")
    for url, body in (
        (f"{base}/packages/{PACKAGE}", {"name": PACKAGE}),
        (
            f"{base}/actions/{PACKAGE}/{ACTION}?overwrite=true",
            {
                "exec": {
                    "kind": "python:3",
                    "binary": True,
                    "code": base64.b64encode(code.getvalue()).decode(),
                }
            },
        ),
    ):
        answer = requests.put(url, json=body, auth=auth, verify=fake.ca_bundle, timeout=10)  # type: ignore[arg-type]
        assert answer.status_code == 200, answer.text
    try:
        yield Setup(fake, api_key, namespace, tmp_path / "storage")
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def trust_the_stand_in(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    from pywren_deferrable.dispatch import credentials

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", setup.fake.ca_bundle)
    credentials._verified_context.cache_clear()


async def test_never_more_than_max_workers_and_the_cursor_follows_acceptance(setup: Setup) -> None:
    plan = await setup.store_plan()
    dispatcher = setup.dispatcher()
    try:
        assert await dispatcher.step(setup.source, setup.poll_result(set())) == 0  # the first wave runs
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0))) == 1
        assert setup.invoked() == ["00002"] and await setup.cursor() == 1
        # Still two running (00001 and 00002): nothing more.
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0))) == 0
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0, 1, 2))) == 2
        assert sorted(setup.invoked()) == sorted(ids(2, 3, 4)) and await setup.cursor() == 3
        assert dispatcher.undispatched_calls() == {"M000": ids(5, 6)}
        # The payload Lithops' worker gets: the chunk's fields, and the secret back in.
        params = next(a.params for a in setup.fake.activations.values() if a.call_ids == ["00003"])
        assert params["data_byte_strs"] == ["3"] and params["call_ids"] == ["00003"]
        assert params["config"]["openwhisk"]["api_key"] == setup.api_key
        assert setup.api_key not in plan.to_json().decode()
    finally:
        await dispatcher.close()

    # A new trigger resumes from the stored cursor, and from what storage shows: 00005
    # started (a dispatch whose cursor write was lost) moves it without a re-dispatch.
    resumed = setup.dispatcher()
    try:
        assert await resumed.step(setup.source, setup.poll_result(ids(0, 1, 2, 3, 4), started=ids(5))) == 1
        assert sorted(setup.invoked()) == sorted(ids(2, 3, 4, 6)) and await setup.cursor() == 5
        assert resumed.remaining() == 0
    finally:
        await resumed.close()


async def test_throttling_is_retried_later_without_losing_the_chunk(setup: Setup) -> None:
    await setup.store_plan()
    setup.fake.concurrency_limit = 0  # every invocation: 429
    dispatcher = setup.dispatcher()
    try:
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0, 1))) == 0
        assert setup.fake.throttled >= 2 and setup.invoked() == []
        assert await setup.source.get(setup.job.dispatch_cursor_key("M000")) is None
        setup.fake.concurrency_limit = 100
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0, 1))) == 0  # backing off
        setup.now += 5
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0, 1))) == 2
        assert sorted(setup.invoked()) == sorted(ids(2, 3))
    finally:
        await dispatcher.close()


async def test_an_endpoint_down_for_longer_than_max_outage_is_an_error(setup: Setup) -> None:
    await setup.store_plan()
    dispatcher = setup.dispatcher(max_outage=10)
    setup.fake.down_for(30)
    try:
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0))) == 0
        setup.now += 11
        with pytest.raises(DispatchError, match="for more than 10s"):
            await dispatcher.step(setup.source, setup.poll_result(ids(0)))
    finally:
        await dispatcher.close()


async def test_a_refused_key_is_a_clear_error_naming_no_key(setup: Setup) -> None:
    await setup.store_plan()
    wrong = f"{uuid.uuid4()}:{uuid.uuid4().hex}"
    dispatcher = setup.dispatcher(api_key=wrong)
    try:
        with pytest.raises(DispatchRefused, match="401") as err:
            await dispatcher.step(setup.source, setup.poll_result(ids(0)))
        assert wrong.split(":")[1] not in str(err.value)
    finally:
        await dispatcher.close()


async def test_a_deleted_action_is_a_clear_error(setup: Setup) -> None:
    await setup.store_plan()
    assert setup.fake.delete_action(ACTION) == 1
    dispatcher = setup.dispatcher()
    try:
        with pytest.raises(DispatchRefused, match="404, the action does not exist"):
            await dispatcher.step(setup.source, setup.poll_result(ids(0)))
    finally:
        await dispatcher.close()


async def test_a_missing_plan_is_a_clear_error(setup: Setup) -> None:
    dispatcher = setup.dispatcher()
    with pytest.raises(DispatchError, match="no dispatch plan in storage"):
        await dispatcher.step(setup.source, setup.poll_result(set()))
