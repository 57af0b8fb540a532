"""Helpers of the parity suite (see conftest.py)."""

from __future__ import annotations

from typing import Any


class FakeTI:
    """Just enough of a task instance for ``xcom_pull``."""

    dag_id = "lithops_parity"

    def __init__(self, xcoms: dict[str, Any] | None = None) -> None:
        self.xcoms = xcoms or {}

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcoms[task_ids]


def run_task(op: Any, xcoms: dict[str, Any] | None = None) -> Any:
    """Run the operator as a task would, waiting on the worker (``deferrable=False`` runs
    the trigger's own poll loop here) so that the test gets its return value."""
    op.deferrable = False
    return op.execute({"ti": FakeTI(xcoms)})


def calls_of(op: Any) -> int:
    """Every call the task's job made (Lithops' ``len(futures)``: maps and reducers)."""
    return sum(op._submitted.total_calls.values())
