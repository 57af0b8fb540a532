"""The usage line a task logs when its results are in."""

from __future__ import annotations

import pytest

from pywren_deferrable.call_status import CallStatus
from pywren_deferrable.pricing import DEFAULT_PRICES, Price
from pywren_deferrable.usage import usage_line, usage_of


def status(call: str, start: float | None, end: float | None) -> CallStatus:
    return CallStatus(call, False, None, None, b"", False, worker_start=start, worker_end=end)


def test_usage_sums_durations_and_prices_gb_seconds() -> None:
    statuses = [status("00000", 100.0, 104.0), status("00001", 101.0, 105.5), status("00002", None, None)]
    usage = usage_of(
        statuses, submitted_at=99.0, memory_mb=512, price=Price(0.00002, 0.0000002, "EUR", "mine")
    )
    assert usage.calls == 3
    assert usage.wall == pytest.approx(6.5)  # submitted at 99, last end 105.5
    assert usage.call_seconds == pytest.approx(8.5)
    assert usage.gb_seconds == pytest.approx(4.25)  # 8.5 s x 0.5 GB
    assert usage.cost == pytest.approx(4.25 * 0.00002 + 3 * 0.0000002)
    assert usage_line("abc123-0", usage) == (
        "Job abc123-0: 3 calls, 6.5s wall, 8.5 call-seconds, 4.2 GB-s, ~8.56e-05 EUR (mine)"
    )


def test_without_memory_price_or_times_the_line_says_less() -> None:
    usage = usage_of([status("00000", None, None)], submitted_at=None, memory_mb=None, price=None)
    assert usage_line("abc123-0", usage) == "Job abc123-0: 1 calls, 0.0 call-seconds"
    local = usage_of(
        [status("00000", 1.0, 3.0)], submitted_at=0.5, memory_mb=1024, price=DEFAULT_PRICES["localhost"]
    )
    assert usage_line("x", local).endswith("2.0 GB-s, ~0 USD (localhost: runs on this machine)")
