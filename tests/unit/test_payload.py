"""Payload functions defined next to Airflow objects: shipped by value, or refused clearly."""

from __future__ import annotations

import pickle
import sys
import types

import cloudpickle
import pytest
from airflow.sdk import DAG

from pywren_deferrable import PyWrenMapOperator
from pywren_deferrable.payload import (
    module_imports_airflow,
    pickled_globals,
    pickled_module_references,
    prepare_payload,
)

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


# -- every kind of Airflow reference in a DAG file's function (issue 13, item 5) ---------

import dag_file_payloads  # noqa: E402  (a DAG-file-shaped module, next to this file)


@pytest.mark.parametrize("function_name", sorted(dag_file_payloads.USES_AIRFLOW))
def test_dag_file_function_using_airflow_is_refused(function_name: str) -> None:
    function = getattr(dag_file_payloads, function_name)
    expected = dag_file_payloads.USES_AIRFLOW[function_name]
    with pytest.raises(TypeError, match=rf"map_function: '{function_name}' uses Airflow objects") as err:
        PyWrenMapOperator(task_id="t", map_function=function, map_iterdata=[1])
    assert expected in str(err.value)


def test_variable_get_fetched_from_the_memo_is_seen() -> None:
    """The seed family's case: ``Variable.get`` inside a DAG-file function. Its module name
    reaches STACK_GLOBAL through the memo (BINGET), which reading the last two strings
    of the stream missed."""
    payload = cloudpickle.dumps(dag_file_payloads.variable_get)
    ops = [op.name for op, _arg, _pos in __import__("pickletools").genops(payload)]
    assert "STACK_GLOBAL" in ops and {"BINGET", "LONG_BINGET"} & set(ops)
    assert ("airflow.sdk.definitions.variable", "Variable") in pickled_globals(payload)


@pytest.mark.parametrize("function_name", sorted(dag_file_payloads.FREE_OF_AIRFLOW))
def test_dag_file_function_free_of_airflow_is_accepted_and_runs_by_value(function_name: str) -> None:
    function = getattr(dag_file_payloads, function_name)
    op = PyWrenMapOperator(task_id="t", map_function=function, map_iterdata=[3])
    assert op.map_function is function
    payload = cloudpickle.dumps(function)
    assert not any(m.startswith("airflow") for m in pickled_module_references(payload))
    saved = sys.modules.pop(dag_file_payloads.__name__)
    try:  # it loads and runs where the DAG file cannot be imported
        assert pickle.loads(payload)(3) == dag_file_payloads.FREE_OF_AIRFLOW[function_name]
    finally:
        sys.modules[dag_file_payloads.__name__] = saved


def test_reduce_and_call_async_functions_are_checked_too() -> None:
    from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapReduceOperator

    with pytest.raises(TypeError, match="func: 'context_get' uses Airflow objects"):
        PyWrenCallAsyncOperator(task_id="t", func=dag_file_payloads.context_get, data={"x": 1})
    with pytest.raises(TypeError, match="reduce_function: 'variable_get' uses Airflow objects"):
        PyWrenMapReduceOperator(
            task_id="t",
            map_function=dag_file_payloads.plain,
            map_iterdata=[1],
            reduce_function=dag_file_payloads.variable_get,
        )


def test_pickled_globals_follows_memo_and_marks() -> None:
    import collections
    import fractions

    # The same global twice: the second time its strings come from the memo.
    data = [collections.OrderedDict, {"k": (collections.OrderedDict, fractions.Fraction)}]
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        found = pickled_globals(pickle.dumps(data, protocol=protocol))
        assert ("collections", "OrderedDict") in found, protocol
        assert ("fractions", "Fraction") in found, protocol
