"""Payload functions defined next to Airflow objects: shipped by value, or refused clearly."""

from __future__ import annotations

import pickle
import sys
import types

import cloudpickle
import pytest
from airflow.sdk import DAG

from pywren_deferrable import PyWrenMapOperator
from pywren_deferrable.payload import module_imports_airflow, pickled_module_references, prepare_payload

with DAG(dag_id="payload_test_dag", schedule=None) as THIS_DAG:
    pass


def uses_the_dag(x):
    return THIS_DAG.dag_id + str(x)


def plain(x):
    return x * 2


def test_this_module_counts_as_a_dag_file() -> None:
    assert module_imports_airflow(sys.modules[__name__])
    assert not module_imports_airflow(types.ModuleType("empty"))


def test_function_from_a_dag_file_is_pickled_by_value() -> None:
    prepare_payload("map_function", plain)
    payload = cloudpickle.dumps(plain)
    assert __name__ not in pickled_module_references(payload)
    # It loads where this module cannot be imported.
    saved = sys.modules.pop(__name__)
    try:
        assert pickle.loads(payload)(21) == 42
    finally:
        sys.modules[__name__] = saved


def test_function_using_airflow_objects_is_refused_at_parse_time() -> None:
    with pytest.raises(
        TypeError, match=r"map_function: 'uses_the_dag' uses Airflow objects \(airflow\."
    ) as err:
        PyWrenMapOperator(task_id="t", map_function=uses_the_dag, map_iterdata=[1])
    assert "move it to a module that does not import Airflow" in str(err.value)


def test_unpicklable_function_is_refused() -> None:
    import threading

    lock = threading.Lock()

    def holds_a_lock(x):
        return lock, x

    with pytest.raises(TypeError, match="map_function: 'holds_a_lock' cannot be pickled"):
        PyWrenMapOperator(task_id="t", map_function=holds_a_lock, map_iterdata=[1])


def test_pickled_module_references_reads_globals_only() -> None:
    assert "os.path" in pickled_module_references(
        pickle.dumps(__import__("os").path.join)
    ) or "posixpath" in (pickled_module_references(pickle.dumps(__import__("os").path.join)))
    assert pickled_module_references(pickle.dumps([1, "airflow.models", {"a": 2}])) == set()


def test_builtin_without_signature_is_refused() -> None:
    from pywren_deferrable import PyWrenMapReduceOperator

    with pytest.raises(TypeError, match="reduce_function: <built-in function max> has no Python signature"):
        PyWrenMapReduceOperator(task_id="t", map_function=plain, map_iterdata=[1], reduce_function=max)
