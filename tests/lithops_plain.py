"""Run a job through plain ``lithops.FunctionExecutor``, as a Lithops user would, to compare
with what the operators give for the same input.

It runs in a process of its own with a private TMPDIR: Lithops' localhost backend re-copies
itself under ``$TMPDIR/lithops-<user>/`` for every executor, which would disturb the jobs
that other tests (or test sessions) run at the same time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from pywren_deferrable.submit import LITHOPS_SESSION_ENV


@dataclass
class PlainRun:
    """What plain Lithops did: calls per job id, and ``get_result()`` (or the error it raised)."""

    calls: dict[str, int]
    results: Any = None
    error: str | None = None


def run_plain(
    config: dict[str, Any],
    call_type: str,
    function: Callable[..., Any],
    make_iterdata: Callable[[], Any],
    *,
    timeout: float = 240,
    **kwargs: Any,
) -> PlainRun:
    """``FunctionExecutor(config=config).<call_type>(function, make_iterdata(), **kwargs)``,
    then ``get_result()``. ``make_iterdata`` builds the input in that process (a generator
    cannot be sent there)."""
    with tempfile.TemporaryDirectory(prefix="lithops-plain-") as directory:
        spec_path = os.path.join(directory, "spec.pickle")
        out_path = os.path.join(directory, "out.pickle")
        with open(spec_path, "wb") as handle:
            cloudpickle.dump(
                {
                    "config": config,
                    "call_type": call_type,
                    "function": function,
                    "make_iterdata": make_iterdata,
                    "kwargs": kwargs,
                },
                handle,
            )
        tmp = os.path.join(directory, "tmp")
        os.mkdir(tmp)
        # A fresh Lithops session, as a new script has: a process that used Lithops exports
        # its session id and executor count, and children inheriting them would take the
        # same executor id as each other, and write under the same job keys.
        env = {k: v for k, v in os.environ.items() if k not in LITHOPS_SESSION_ENV}
        process = subprocess.run(
            [sys.executable, "-m", "lithops_plain", spec_path, out_path],
            env=dict(env, TMPDIR=tmp),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if not os.path.exists(out_path):
            raise RuntimeError(
                f"plain Lithops run died (code {process.returncode}): {process.stderr[-3000:]!r}"
            )
        with open(out_path, "rb") as handle:
            return PlainRun(**cloudpickle.load(handle))


def _main(spec_path: str, out_path: str) -> None:
    import lithops

    with open(spec_path, "rb") as handle:
        spec = cloudpickle.load(handle)
    fexec = lithops.FunctionExecutor(config=spec["config"])
    outcome: dict[str, Any] = {"calls": {}}
    try:
        submit = getattr(fexec, spec["call_type"])
        iterdata = spec["make_iterdata"]()
        if spec["call_type"] == "map_reduce":
            reduce_function = spec["kwargs"].pop("reduce_function")
            futures = submit(spec["function"], iterdata, reduce_function, **spec["kwargs"])
        else:
            futures = submit(spec["function"], iterdata, **spec["kwargs"])
        listed = futures if isinstance(futures, list) else [futures]
        outcome["calls"] = dict(Counter(f.job_id for f in listed))
        outcome["results"] = fexec.get_result(futures)
    except Exception as err:  # what a Lithops user would see
        outcome["error"] = f"{type(err).__name__}: {err}"
    with open(out_path, "wb") as handle:
        cloudpickle.dump(outcome, handle)


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
