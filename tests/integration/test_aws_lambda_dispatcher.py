"""The trigger's AWS Lambda invoker (pywren_deferrable.dispatch.aws_lambda) and the
dispatcher with an ``aws_lambda`` plan, against the AWS Lambda stand-in (tests/lambda_fake:
SigV4 checked, invocations run), call by call.

A trivial function (no Lithops: these tests are about the invocations, not the worker)
and the job's objects in Lithops' localhost storage layout on disk; the poll results are
built here, so that each test decides which calls have ended.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from dispatch_bed import DispatchBed, ids
from lambda_fake.platform import LambdaAccount, lambda_account

from pywren_deferrable.dispatch import aws_lambda
from pywren_deferrable.dispatch.aws_lambda import AwsLambdaInvoker
from pywren_deferrable.dispatch.dispatcher import Dispatcher
from pywren_deferrable.dispatch.errors import DispatchError, DispatchRefused, DispatchUnavailable
from pywren_deferrable.embedded import free_port

pytestmark = pytest.mark.integration

FUNCTION = "lithops-worker-test-noop"
MAX_WORKERS = 2
DIRECT = 2
PENDING = 4
TOTAL = DIRECT + PENDING
HANDLER = (
    "def handle(event, context):\n    return {'calls': event.get('call_ids'), 'id': context.aws_request_id}\n"
)


class Setup(DispatchBed):
    backend = "aws_lambda"

    def __init__(self, account: LambdaAccount, root: Path) -> None:
        super().__init__(root, max_workers=MAX_WORKERS, direct=DIRECT, pending=PENDING)
        self.account, self.fake = account, account.fake

    def connection_config(self, **aws: str) -> dict[str, Any]:
        keys = {"access_key_id": self.account.access_key, "secret_access_key": self.account.secret_key, **aws}
        return {
            "lithops": {"backend": "aws_lambda", "storage": "localhost"},
            "aws": {**keys, "region": self.fake.region},
            "aws_lambda": {"execution_role": "arn:aws:iam::123456789012:role/x"},
        }

    def payload_config(self) -> dict[str, Any]:
        """The config Lithops puts in payloads: its aws keys copied into aws_lambda."""
        config = super().payload_config()
        config["aws_lambda"] = {**config["aws_lambda"], **config["aws"]}
        return config

    def target(self, function: str = FUNCTION) -> dict[str, Any]:
        return {
            "region": self.fake.region,
            "function": function,
            "user_agent": "lithops/3.8.0",
            "credentials": {k: ["aws_lambda", k] for k in ("access_key_id", "secret_access_key")},
        }

    def dispatcher(self, max_outage: float = 60.0, **aws: str) -> Dispatcher:
        async def get_config() -> dict[str, Any]:
            return self.connection_config(**aws)

        return self.dispatcher_with(get_config, max_outage)

    def invoked(self) -> list[str]:
        return [c for i in self.fake.invocations.values() for c in i.call_ids]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setattr(aws_lambda, "FIRST_BACKOFF", 0.05)
    with lambda_account(tmp_path, monkeypatch) as account:
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", HANDLER)
        boto3.client(
            "lambda",
            region_name=account.fake.region,
            aws_access_key_id=account.access_key,
            aws_secret_access_key=account.secret_key,
        ).create_function(
            FunctionName=FUNCTION,
            Runtime="python3.11",
            Role=account.extra["aws_lambda"]["execution_role"],
            Handler="handler.handle",
            Code={"ZipFile": code.getvalue()},
            Timeout=30,
        )
        yield Setup(account, tmp_path / "storage")


def wait_done(setup: Setup, count: int) -> None:
    deadline = time.monotonic() + 60
    while sum(1 for i in setup.fake.invocations.values() if i.end) < count and time.monotonic() < deadline:
        time.sleep(0.05)


async def test_the_invoker_sends_an_event_invoke_with_the_payload(setup: Setup) -> None:
    invoker = AwsLambdaInvoker(setup.target(), setup.payload_config())
    try:
        request_id = await invoker.invoke({"call_ids": ["00007"], "config": {}})
    finally:
        await invoker.close()
    (invocation,) = setup.fake.invocations.values()
    assert invocation.request_id == request_id and invocation.invocation_type == "Event"
    wait_done(setup, 1)
    assert invocation.status == "success" and invocation.result == {"calls": ["00007"], "id": request_id}
    assert setup.account.secret_key not in repr(invoker)


@pytest.mark.parametrize(
    ("keys", "code"),
    [
        ({"secret_access_key": "wrong-secret-" + "0" * 27}, "InvalidSignatureException"),
        ({"access_key_id": "AKIAUNKNOWN000000000"}, "UnrecognizedClientException"),
    ],
)
async def test_a_refused_key_is_refused_naming_no_secret(
    setup: Setup, keys: dict[str, str], code: str
) -> None:
    config = setup.payload_config()
    config["aws_lambda"].update(keys)
    invoker = AwsLambdaInvoker(setup.target(), config)
    try:
        with pytest.raises(DispatchRefused, match=f"403 {code}.*AWS key was refused") as refused:
            await invoker.invoke({"call_ids": ["00000"]})
    finally:
        await invoker.close()
    assert "wrong-secret" not in str(refused.value) and setup.account.secret_key not in str(refused.value)
    assert setup.fake.invocations == {}


async def test_a_missing_function_is_refused(setup: Setup) -> None:
    invoker = AwsLambdaInvoker(setup.target("no-such-function"), setup.payload_config())
    try:
        with pytest.raises(DispatchRefused, match=r"404 ResourceNotFoundException.*does not exist"):
            await invoker.invoke({"call_ids": ["00000"]})
    finally:
        await invoker.close()


async def test_throttling_is_retried_then_unavailable(setup: Setup) -> None:
    setup.fake.concurrency_limit = 0
    invoker = AwsLambdaInvoker(setup.target(), setup.payload_config())
    try:
        with pytest.raises(DispatchUnavailable, match="429 TooManyRequestsException"):
            await invoker.invoke({"call_ids": ["00000"]})
        assert setup.fake.throttled == aws_lambda.MAX_ATTEMPTS
        setup.fake.concurrency_limit = 1
        assert await invoker.invoke({"call_ids": ["00000"]})
    finally:
        await invoker.close()


async def test_an_unreachable_endpoint_is_unavailable(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"https://127.0.0.1:{free_port()}")
    invoker = AwsLambdaInvoker(setup.target(), setup.payload_config())
    try:
        with pytest.raises(DispatchUnavailable, match="attempts"):
            await invoker.invoke({"call_ids": ["00000"]})
    finally:
        await invoker.close()


async def test_the_dispatcher_caps_running_chunks_and_restores_the_keys(setup: Setup) -> None:
    plan = await setup.store_plan()
    assert setup.account.secret_key not in plan.to_json().decode()
    dispatcher = setup.dispatcher()
    try:
        assert await dispatcher.step(setup.source, setup.poll_result(set())) == 0  # the first wave runs
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0))) == 1
        assert setup.invoked() == ["00002"] and await setup.cursor() == 1
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0))) == 0
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0, 1, 2))) == 2
        assert sorted(setup.invoked()) == sorted(ids(2, 3, 4)) and await setup.cursor() == 3
        event = next(i.event for i in setup.fake.invocations.values() if i.call_ids == ["00003"])
        assert event["data_byte_strs"] == ["3"]
        assert event["config"]["aws_lambda"]["secret_access_key"] == setup.account.secret_key
    finally:
        await dispatcher.close()


async def test_the_dispatcher_retries_throttling_later_without_losing_the_chunk(setup: Setup) -> None:
    await setup.store_plan()
    setup.fake.concurrency_limit = 0
    dispatcher = setup.dispatcher()
    try:
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0, 1))) == 0
        assert setup.fake.throttled >= 2 and setup.invoked() == []
        assert await setup.source.get(setup.job.dispatch_cursor_key("M000")) is None
        setup.fake.concurrency_limit = 100
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0, 1))) == 0  # backing off
        setup.now += 5
        assert await dispatcher.step(setup.source, setup.poll_result(ids(0, 1))) == 2
        assert sorted(setup.invoked()) == sorted(ids(2, 3)) and await setup.cursor() == 2
    finally:
        await dispatcher.close()


async def test_a_key_revoked_after_submission_fails_the_dispatch_clearly(setup: Setup) -> None:
    await setup.store_plan()
    setup.fake.credentials = {}  # the key was deleted in IAM
    dispatcher = setup.dispatcher()
    try:
        with pytest.raises(DispatchError, match=r"job M000.*403 UnrecognizedClientException") as failure:
            await dispatcher.step(setup.source, setup.poll_result(ids(0)))
    finally:
        await dispatcher.close()
    assert setup.account.secret_key not in str(failure.value)
