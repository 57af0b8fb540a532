"""Functions the benchmarks run on Lithops. No Airflow import here: Lithops workers import
this module (see the README: payload functions live in an Airflow-free module)."""

from __future__ import annotations

import time


def sleep_then(x: int, seconds: float = 1.0) -> int:
    """A long call that costs no CPU: the job of the worker-slot benchmark."""
    time.sleep(seconds)
    return x


def square(x: int) -> int:
    """A cheap call: the job of the end-to-end and fetch benchmarks."""
    return x * x
