"""A job's cost estimate: GB-seconds times a per-backend price.

Serverless platforms bill memory x duration (GB-seconds) plus, on some, a price per
invocation; the job tab and the task's resume summary multiply the job's GB-seconds by
the price of the compute backend that ran it. Defaults are public list prices (USD, see ``PRICES_AS_OF`` and
docs/job-tab.md); a Connection may set its own under the extra's ``job_price`` key,
either flat (``{"gb_second": 0.00002, "per_call": 0, "currency": "EUR"}``, for the
Connection's backend) or per backend (``{"code_engine": {...}, "aws_lambda": {...}}``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PRICES_AS_OF = "2026-12-01"
EXTRA_KEY = "job_price"


@dataclass(frozen=True)
class Price:
    """What one GB-second and one invocation cost on a backend.

    :param gb_second: price of one GB-second of memory x duration.
    :param per_call: price of one invocation.
    :param currency: ISO code of the currency.
    :param source: where the price comes from (shown beside the estimate).
    """

    gb_second: float
    per_call: float = 0.0
    currency: str = "USD"
    source: str = "default"

    def cost(self, gb_seconds: float, calls: int) -> float:
        """The estimate for a job of ``calls`` calls that used ``gb_seconds``."""
        return gb_seconds * self.gb_second + calls * self.per_call


DEFAULT_PRICES: dict[str, Price] = {
    # AWS Lambda, x86, first pricing tier, us-east-1: 0.0000166667 USD per GB-s and
    # 0.20 USD per million requests.
    "aws_lambda": Price(0.0000166667, 0.20 / 1_000_000, "USD", f"AWS Lambda list price ({PRICES_AS_OF})"),
    # IBM Code Engine bills memory (0.00000356 USD per GB-s) and vCPU (0.00003431 USD per
    # vCPU-s) apart; Lithops' default sizing gives a call 0.5 vCPU per GB (0.125 vCPU
    # for 256 MB), so one GB-second of a call costs 0.00000356 + 0.5 x 0.00003431.
    "code_engine": Price(
        0.00000356 + 0.5 * 0.00003431, 0.0, "USD", f"IBM Code Engine list price, 0.5 vCPU/GB ({PRICES_AS_OF})"
    ),
    # IBM Cloud Functions (the seed's platform, since retired): 0.000017 USD per GB-s.
    "ibm_cf": Price(0.000017, 0.0, "USD", f"IBM Cloud Functions last list price ({PRICES_AS_OF})"),
    # Lithops' localhost backend runs on this machine: nothing is billed per call.
    "localhost": Price(0.0, 0.0, "USD", "localhost: runs on this machine"),
}


def _price_from(raw: Any, where: str) -> Price:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object like {{'gb_second': 0.0000166667, 'currency': 'USD'}}")
    values: dict[str, float] = {}
    for name in ("gb_second", "per_call"):
        value = raw.get(name, 0.0)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"{where}.{name} must be a non-negative number, got {value!r}")
        values[name] = float(value)
    currency = raw.get("currency", "USD")
    if not isinstance(currency, str) or not currency.strip() or len(currency) > 8:
        raise ValueError(f"{where}.currency must be a short currency code, got {currency!r}")
    return Price(values["gb_second"], values["per_call"], currency.strip(), "the Connection's job_price")


def price_for(backend: str | None, extra: dict[str, Any] | None) -> Price | None:
    """The price of ``backend``: the Connection's ``job_price`` if it sets one, else the
    default, else ``None`` (the tab then shows GB-seconds only).

    :raises ValueError: when the Connection's ``job_price`` is malformed (named in the message).
    """
    configured = (extra or {}).get(EXTRA_KEY)
    if configured is not None:
        if not isinstance(configured, dict):
            raise ValueError(f"the Connection extra's {EXTRA_KEY!r} must be an object")
        if "gb_second" in configured or "per_call" in configured:
            return _price_from(configured, EXTRA_KEY)
        if backend is not None and backend in configured:
            return _price_from(configured[backend], f"{EXTRA_KEY}.{backend}")
    return DEFAULT_PRICES.get(backend or "")


def gb_seconds(durations: Iterable[float], memory_mb: float) -> float:
    """Memory x duration summed over calls, in GB-seconds (1 GB = 1,024 MB, as the FaaS
    price lists count it)."""
    return sum(durations) * memory_mb / 1024.0
