"""Each detached runner starts a Lithops session of its own, whatever its parent did."""

from __future__ import annotations

import pytest
from payloads.functions import add

pytestmark = pytest.mark.integration


def test_runners_of_a_process_that_used_lithops_get_distinct_executor_ids(
    submit_job, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that made a Lithops executor exports its session and executor count
    (lithops/utils.py); runners inheriting them took the same next executor id, so two
    maps wrote under the same job keys (found when a test ran plain Lithops in-process)."""
    monkeypatch.setenv("__LITHOPS_SESSION_ID", "abcdef")
    monkeypatch.setenv("__LITHOPS_TOTAL_EXECUTORS", "6")
    first = submit_job(add, [1])
    second = submit_job(add, [2])
    assert first.executor_id != second.executor_id
    assert not first.executor_id.startswith("abcdef-")
