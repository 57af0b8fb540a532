"""The shared client's fast timestamp parser gives what botocore's own parser gives."""

from __future__ import annotations

import pytest
from botocore.utils import parse_timestamp

from pywren_deferrable.hooks.s3_client_pool import fast_timestamp


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-25T23:50:00.000Z",
        "2026-11-25T23:50:00Z",
        "2026-11-25T23:50:00.123456+00:00",
        "2026-02-03T04:05:06.789Z",
        "Wed, 25 Nov 2026 23:50:00 GMT",  # RFC 1123, as in Last-Modified headers: the fallback
    ],
)
def test_same_instant_as_botocore(value: str) -> None:
    ours, theirs = fast_timestamp(value), parse_timestamp(value)
    assert ours.tzinfo is not None
    assert ours.timestamp() == theirs.timestamp()
