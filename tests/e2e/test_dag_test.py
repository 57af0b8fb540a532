"""The example DAGs end to end through Airflow's dag.test(): submit, defer, trigger, resume."""

from __future__ import annotations

import pytest

from pywren_deferrable.embedded import run_dag_test

pytestmark = pytest.mark.e2e


def test_seed_map_example_returns_2_3_4(airflow_db: str, lithops_conn: str, example_dags: str) -> None:
    state, results = run_dag_test(example_dags, "example_pywren_map")
    assert state == "success"
    assert results["map_task"] == [2, 3, 4]
