"""Lithops' ``tests/test_retries.py`` (3.8), restated as tasks with ``call_retries``.

Lithops runs ``RetryingFunctionExecutor.map(..., retries=N, timeout=5)`` and asserts the set
of outputs and how often each input ran (``check_invocation_counts``, counted in files the
function writes). Here the same function and the same checks run through
``PyWrenMapOperator(call_retries=N, timeout=5)``: failed calls are resubmitted in rounds,
with the worker slot free between them.

Not restated: the ``TestRetryingFutureUnit`` / ``TestRetryingFunctionExecutorUnit`` cases,
which drive Lithops' ``RetryingFuture`` and ``RetryingFunctionExecutor`` classes through
mocks; the provider does not use those classes (see pywren_deferrable/retries.py). Their
behaviour that a task can show is covered here and in tests/integration/test_call_retries.py:
the budget (N + 1 tries), the original input resubmitted, no retry once the budget is spent,
and a default of no retries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException
from lithops.tests.test_retries import check_invocation_counts, deterministic_failure
from parity_helpers import run_task

from pywren_deferrable import PyWrenMapOperator

pytestmark = pytest.mark.integration


def retried_map(
    path: Path, timing_map: dict[int, list[int]], n_tasks: int, retries: int
) -> PyWrenMapOperator:
    def partial_map_function(x):
        return deterministic_failure(path, timing_map, x)

    return PyWrenMapOperator(
        task_id="t",
        map_function=partial_map_function,
        map_iterdata=range(n_tasks),
        call_retries=retries,
        timeout=5,
        fail_fast=False,
    )


@pytest.mark.parametrize(
    "timing_map, n_tasks, retries",
    [
        # no failures
        ({}, 3, 2),
        # first invocation fails
        ({0: [-1], 1: [-1], 2: [-1]}, 3, 2),
        # first two invocations fail
        ({0: [-1, -1], 1: [-1, -1], 2: [-1, -1]}, 3, 2),
        # first input sleeps once (20 s, past its 5 s timeout)
        ({0: [20]}, 3, 2),
    ],
)
def test_success(lithops_conn: str, tmp_path: Path, timing_map, n_tasks, retries) -> None:
    outputs = set(run_task(retried_map(tmp_path, timing_map, n_tasks, retries)))
    assert outputs == set(range(n_tasks))
    check_invocation_counts(tmp_path, timing_map, n_tasks, retries)


@pytest.mark.parametrize(
    "timing_map, n_tasks, retries",
    [
        # too many failures
        ({0: [-1], 1: [-1], 2: [-1, -1, -1]}, 3, 2),
    ],
)
def test_failure(lithops_conn: str, tmp_path: Path, timing_map, n_tasks, retries) -> None:
    # Lithops' result() re-raises the RuntimeError; the task fails with it as the remote error.
    with pytest.raises(AirflowException, match="RuntimeError: Deliberately fail on invocation number 3"):
        run_task(retried_map(tmp_path, timing_map, n_tasks, retries))
    check_invocation_counts(tmp_path, timing_map, n_tasks, retries)
