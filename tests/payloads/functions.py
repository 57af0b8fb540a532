"""Functions the tests run on Lithops."""

from __future__ import annotations

import time


def add(x, y=0):
    return x + y


def fail_on(x, bad=3):
    if x == bad:
        raise ValueError(f"boom on {x}")
    return x


def sleep_then(x, seconds=1.0):
    time.sleep(seconds)
    return x


def big_result(x, size=20000):
    """A result larger than Lithops' 8 KiB inline limit: it goes to output.pickle."""
    return str(x) * size


def nothing(x):
    return None


def read_env(x, name="PYWREN_TEST_VAR"):
    import os

    return f"{x}:{os.environ.get(name)}"


def positional(a, b, c):
    return [a, b, c]


def count_lines(obj):
    """One call per storage object or chunk: its number of lines."""
    return obj.data_stream.read().decode().count("\n")


def total(results):
    return sum(results)


def flaky(x, bad=3, failures=1, marker_dir=""):
    """Returns ``x``, except that its first ``failures`` runs with ``x == bad`` raise.

    Every run leaves a file ``run-<x>-<n>`` in ``marker_dir`` (the calls of the localhost
    backend share this machine's disk), so a test can count how often each input ran.
    """
    import os

    runs = sum(1 for name in os.listdir(marker_dir) if name.startswith(f"run-{x}-"))
    with open(os.path.join(marker_dir, f"run-{x}-{runs}"), "x"):
        pass
    if x == bad and runs < failures:
        raise ValueError(f"run {runs + 1} of input {x} fails")
    return x
