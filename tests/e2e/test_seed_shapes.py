"""The seed family's DAG shapes through Airflow's dag.test(): parse, render, submit, defer,
trigger, resume (see tests/e2e/dags/e2e_seed_shapes.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pywren_deferrable.embedded import run_dag_test

pytestmark = pytest.mark.e2e

DAGS = Path(__file__).resolve().parent / "dags"


def test_seed_shapes_dag(airflow_db: str, lithops_conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # dag.test() serializes the DAGs of the configured DAG folder: this one's.
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
    sys.path.insert(0, str(DAGS))
    try:
        import e2e_seed_shapes as shapes
    finally:
        sys.path.remove(str(DAGS))
    state, results = run_dag_test(str(DAGS), "e2e_seed_shapes")
    assert state == "success", results
    records = shapes.RECORDS
    assert len(results["parse_data"]) == 4  # one call per chunk of the one object
    for country in shapes.COUNTRIES:
        rows = [r for r in records if r["country"] == country]
        assert sum(part.get(country, 0) for part in results["parse_data"]) == len(rows)
        temps = [r["temp"] for r in rows]
        assert results[f"{country}_plot_temp"] == round(sum(temps) / len(temps), 3)
    assert results["from_task"] == [[3, 0], [4, 1]]
    assert results["from_generator"] == [[0, 0], [1, 1], [4, 2]]
    assert results["numbered"] == [[7, 0], [8, 1]]
