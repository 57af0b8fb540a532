"""Payload functions that return Lithops futures: each starts jobs of its own inside its
call (Lithops' documented way to fan out at run time) and returns their futures, so that
``get_result()`` returns the inner jobs' results. They run on Lithops workers only."""

from __future__ import annotations

import time

import lithops


def times_ten(x):
    return x * 10


def fail_on_two(x):
    if x == 2:
        raise ValueError(f"inner boom {x}")
    return x


def add_all(results):
    return sum(results)


def fan_map(n):
    """A list of futures (``FuturesList``) from a map of ``n`` calls."""
    return lithops.FunctionExecutor().map(times_ten, list(range(n)))


def fan_map_in_order(n):
    """:func:`fan_map`, with later calls of an outer map finishing later: Lithops'
    ``get_result()`` appends returned futures in the order their calls finish."""
    time.sleep(n)
    return fan_map(n)


def fan_one(x):
    """One future, from ``call_async``."""
    return lithops.FunctionExecutor().call_async(times_ten, x)


def fan_one_in_list(x):
    """A plain list holding one future."""
    return [lithops.FunctionExecutor().call_async(times_ten, x)]


def fan_map_reduce(n):
    """The futures of a ``map_reduce`` (its map futures produce no output)."""
    return lithops.FunctionExecutor().map_reduce(times_ten, list(range(n)), add_all)


def fan_nested(n):
    """Futures of calls that return futures themselves (two levels)."""
    return lithops.FunctionExecutor().map(fan_map_in_order, [n, n + 1])


def fan_fail(n):
    """Futures of a map whose call 00002 raises."""
    return lithops.FunctionExecutor().map(fail_on_two, list(range(n)))


def plain_or_fan(x):
    """A value for ``x == 0``, futures otherwise: a map that mixes both. Like
    :func:`fan_map_in_order`, later calls return their futures later."""
    if x == 0:
        return "plain"
    time.sleep(2 * x)
    return lithops.FunctionExecutor().map(times_ten, [x, x + 1])
