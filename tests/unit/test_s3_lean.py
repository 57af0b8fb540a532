"""The lean S3 read path signs exactly as botocore's own client does, and parses S3's XML.

The signatures are compared with what a botocore client sends for the same request at
the same instant (its ``before-send`` hook sees the signed request; nothing is sent).
"""

from __future__ import annotations

import datetime
from typing import Any

import aiohttp
import botocore.session
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.handlers import set_list_objects_encoding_type_url

from pywren_deferrable.config import S3Credentials
from pywren_deferrable.storages.s3 import lean_credentials
from pywren_deferrable.storages.s3_lean import LeanS3Reader, _client_error, parse_listing
from pywren_deferrable.triggers.job import is_transient

ENDPOINT = "http://127.0.0.1:9"
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0)


class _Stop(Exception):
    pass


def botocore_request(operation: str, session_token: str | None, **params: Any) -> Any:
    """What botocore's client would send for ``operation`` (signed, not sent)."""
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="eu-de",
        aws_access_key_id="AKID",
        aws_secret_access_key="SECRET",
        aws_session_token=session_token,
        # Checksum validation adds a header the poller has no use for.
        config=Config(s3={"addressing_style": "path"}, response_checksum_validation="when_required"),
    )
    # The poller does not ask for URL-encoded keys (its keys are plain ASCII).
    client.meta.events.unregister(
        "before-parameter-build.s3.ListObjectsV2", set_list_objects_encoding_type_url
    )
    captured: list[Any] = []

    def capture(request: Any, **_: Any) -> None:
        captured.append(request)
        raise _Stop

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Stop):
        getattr(client, operation)(Bucket="bucket", **params)
    return captured[0]


def lean_request(session_token: str | None, path: str, query: str) -> tuple[Any, dict[str, str]]:
    reader = LeanS3Reader(
        aiohttp.ClientSession.__new__(aiohttp.ClientSession),  # never used: nothing is sent
        ENDPOINT,
        "eu-de",
        "bucket",
        Credentials("AKID", "SECRET", session_token),
    )
    return reader._signed(path, query)


def signed_headers(headers: Any) -> dict[str, str]:
    names = ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256", "X-Amz-Security-Token")
    return {
        n: (v.decode() if isinstance(v, bytes) else v) for n in names if (v := headers.get(n)) is not None
    }


@pytest.mark.parametrize("token", [None, "SESSION/TOKEN+="])
def test_list_request_signed_as_botocore_signs_it(monkeypatch, token) -> None:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW)
    expected = botocore_request(
        "list_objects_v2",
        token,
        Prefix="lithops.jobs/a1b2c3-0-M000/",
        StartAfter="lithops.jobs/a1b2c3-0-M000/00041/~",
        MaxKeys=1000,
    )
    query = "list-type=2&max-keys=1000&prefix=lithops.jobs%2Fa1b2c3-0-M000%2F&start-after=lithops.jobs%2Fa1b2c3-0-M000%2F00041%2F~"
    url, headers = lean_request(token, "", query)
    assert signed_headers(headers) == signed_headers(expected.headers)
    assert sorted(str(url).split("?")[1].split("&")) == sorted(expected.url.split("?")[1].split("&"))


def test_get_request_signed_as_botocore_signs_it(monkeypatch) -> None:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW)
    key = "lithops.jobs/a1b2c3-0-M000/00041/status.json"
    expected = botocore_request("get_object", None, Key=key)
    url, headers = lean_request(None, "/" + key, "")
    assert str(url) == expected.url
    assert signed_headers(headers) == signed_headers(expected.headers)


def test_parse_listing_reads_keys_times_and_the_continuation() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok==</NextContinuationToken>
<Contents><Key>p/00000/a.init</Key><LastModified>2026-01-01T00:00:01.500Z</LastModified><ETag>"x"</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/00000/status.json</Key><LastModified>2026-01-01T00:00:02.000Z</LastModified><ETag>"y"</ETag><Size>9</Size></Contents>
</ListBucketResult>"""
    objects, token = parse_listing(body)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    assert objects == [("p/00000/a.init", start + 1.5), ("p/00000/status.json", start + 2.0)]
    assert token == "tok=="
    last = body.replace(b"<IsTruncated>true", b"<IsTruncated>false")
    assert parse_listing(last)[1] is None


def test_s3_errors_read_like_botocore_errors() -> None:
    slow = _client_error(
        503, b"<Error><Code>SlowDown</Code><Message>reduce</Message></Error>", "ListObjectsV2"
    )
    assert isinstance(slow, ClientError) and slow.response["Error"]["Code"] == "SlowDown"
    assert is_transient(slow)
    denied = _client_error(403, b"<Error><Code>AccessDenied</Code></Error>", "GetObject")
    assert not is_transient(denied)
    assert _client_error(500, b"not xml", "GetObject").response["Error"]["Code"] == "500"


def test_lean_path_only_with_hmac_keys() -> None:
    assert lean_credentials(S3Credentials("a", "s", "t")) is not None
    assert lean_credentials(S3Credentials(None, None)) is None  # botocore's default chain
    assert lean_credentials(S3Credentials(None, None, iam_api_key="k")) is None
