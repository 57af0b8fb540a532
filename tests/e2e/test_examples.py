"""Every example DAG end to end through Airflow's dag.test(): submit, defer, trigger, resume.

The expected values are what the seed README documents, except the map-reduce example:
the README claims 18, but its reducer multiplies by 2 once per map result (2 ** 3 = 8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pywren_deferrable.embedded import run_dag_test

pytestmark = pytest.mark.e2e

WORDS_A = {"brown": 3, "dog": 3, "fox": 3, "jumps": 3, "lazy": 3, "over": 3, "quick": 3, "the": 6}
WORDS_B = {"dog": 2, "fox": 2, "runs": 2, "sleeps": 2, "the": 4}
WORDS_C = {"dog": 1, "lazy": 2}

EXPECTED: dict[str, dict[str, Any]] = {
    "example_pywren_map": {"map_task": [2, 3, 4]},
    "example_pywren_call_async": {"add_task_1": 4, "add_task_2": 8},
    "example_pywren_map_reduce": {"mapreduce_task": 8, "mapreduce_wait_local_task": 8},
    "example_pywren_dag_file_functions": {"longest_hypotenuse": 18.0},
    "example_pywren_modern_inputs": {
        "from_upstream": [11, 21, 31],
        "from_jinja": [6, 7],
        "mapped": {0: [101], 1: [102, 103]},
    },
    "example_pywren_taskflow": {"scale": [10, 20, 30], "total": 60, "square": 25},
    "example_pywren_wordcount": {
        "word_count": {
            "brown": 3,
            "dog": 6,
            "fox": 5,
            "jumps": 3,
            "lazy": 5,
            "over": 3,
            "quick": 3,
            "runs": 2,
            "sleeps": 2,
            "the": 10,
        },
        "word_count_per_object": [WORDS_A, WORDS_B, WORDS_C],
    },
}


def test_every_example_dag_is_covered_and_loads(example_dags: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(example_dags)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == set(EXPECTED)
    assert {p.stem for p in Path(example_dags).glob("example_*.py")} == set(EXPECTED)


# Mapping over a bucket's objects (the word count) is Lithops-only here.
ENGINE_EXAMPLES = sorted(set(EXPECTED))


@pytest.mark.parametrize("dag_id", sorted(set(EXPECTED) - set(ENGINE_EXAMPLES)))
def test_lithops_example_dag_results(
    dag_id: str, airflow_db: str, lithops_conn: str, example_dags: str
) -> None:
    state, results = run_dag_test(example_dags, dag_id)
    assert state == "success"
    for task_id, expected in EXPECTED[dag_id].items():
        assert results[task_id] == expected, task_id


@pytest.mark.engines
@pytest.mark.parametrize("dag_id", ENGINE_EXAMPLES)
def test_example_dag_results(dag_id: str, airflow_db: str, lithops_conn: str, example_dags: str) -> None:
    state, results = run_dag_test(example_dags, dag_id)
    assert state == "success"
    for task_id, expected in EXPECTED[dag_id].items():
        assert results[task_id] == expected, task_id
