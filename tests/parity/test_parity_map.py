"""Lithops' ``tests/test_map.py`` (3.8), restated as PyWrenMapOperator tasks.

A Lithops test that calls ``map`` several times on one executor and reads
``fexec.get_result()`` becomes one task per ``map``; one that chains futures
(``fexec.map(f, ...).map(g)``) becomes two tasks, the second taking the first's results
with ``iterdata_from_task`` (a task's results are values, not futures).
"""

from __future__ import annotations

import pytest
from lithops.tests.functions import (
    concat,
    echo_env_flag,
    hello_world,
    lithops_inside_lithops_map_function,
    lithops_return_futures_call_async,
    lithops_return_futures_map,
    lithops_return_futures_map_multiple,
    lithops_return_futures_map_over_partial,
    simple_map_function,
)
from parity_helpers import run_task

from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator

pytestmark = pytest.mark.integration


def test_simple_map(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=simple_map_function, map_iterdata=[(1, 1), (2, 2), (3, 3), (4, 4)]
    )
    assert run_task(op) == [2, 4, 6, 8]


def test_max_workers(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t",
        map_function=simple_map_function,
        map_iterdata=[(1, 1), (2, 2), (3, 3), (4, 4)],
        pywren_executor_config={"max_workers": 1},
    )
    assert run_task(op) == [2, 4, 6, 8]


def test_range_iterdata(lithops_conn: str) -> None:
    op = PyWrenMapOperator(task_id="t", map_function=hello_world, map_iterdata=range(2))
    assert run_task(op) == ["Hello World!"] * 2


def test_dict_iterdata(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=simple_map_function, map_iterdata=[{"x": 2, "y": 8}, {"x": 2, "y": 8}]
    )
    assert run_task(op) == [10, 10]


def test_set_iterdata(lithops_conn: str) -> None:
    op = PyWrenMapOperator(task_id="t", map_function=concat, map_iterdata=[["a", "b"], ["c", "d"]])
    assert run_task(op) == ["a b", "c d"]


def test_set_range_iterdata(lithops_conn: str) -> None:
    op = PyWrenMapOperator(task_id="t", map_function=hello_world, map_iterdata=set(range(2)))
    assert run_task(op) == ["Hello World!"] * 2


def test_multiple_executions(lithops_conn: str) -> None:
    def mapped(iterdata: list[tuple[int, int]]) -> list[int]:
        return run_task(
            PyWrenMapOperator(task_id="t", map_function=simple_map_function, map_iterdata=iterdata)
        )

    assert mapped([(1, 1), (2, 2)]) + mapped([(3, 3), (4, 4)]) == [2, 4, 6, 8]
    assert mapped([(1, 1), (2, 2)]) == [2, 4]
    result1, result2 = mapped([(1, 1), (2, 2)]), mapped([(3, 3), (4, 4)])
    assert result1 == [2, 4]
    assert result2 == [6, 8]


def test_lithops_inside_lithops(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=lithops_inside_lithops_map_function, map_iterdata=range(1, 5)
    )
    assert run_task(op) == [list(range(i)) for i in range(1, 5)]


def test_lithops_return_futures_map(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=lithops_return_futures_map, data=3)
    assert run_task(op) == [1, 2, 3]


def test_lithops_return_futures_map_over_partial(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=lithops_return_futures_map_over_partial, data=3)
    assert run_task(op) == [0, 2, 4]


def test_lithops_return_futures_call_async(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=lithops_return_futures_call_async, data=3)
    assert run_task(op) == 9


def test_lithops_return_futures_map_multiple(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=lithops_return_futures_map_multiple, data=3)
    assert run_task(op) == [1, 2, 3, 1, 2, 3]


def test_lithops_return_futures_map_over_decorator(lithops_conn: str) -> None:
    def doubled(f):
        def wrapper(*args, **kwargs):
            return 2 * f(*args, **kwargs)

        return wrapper

    @doubled
    def total(a, b, c=0, *args, d, e=5, **kwargs):
        return sum([a, b, c, d, e, *args, *kwargs.values()])

    op = PyWrenMapOperator(
        task_id="t",
        map_function=total,
        map_iterdata=[
            {"a": 1, "b": 2, "d": 3},
            {"args": (1, 2), "d": 3},
            {"args": (1, 2), "d": 3, "e": 4},
            {"args": (1, 2), "d": 3, "f": 4},
            {"a": 1, "b": 2, "d": 3, "e": 6, "f": 4},
            {"args": (1, 2), "d": 3, "e": 6, "f": 4},
            {"args": (1, 2), "kwargs": {"d": 3, "e": 6, "f": 4}},
        ],
    )
    assert run_task(op) == [22, 22, 20, 30, 32, 32, 32]


def test_extra_args_tuple_and_dict(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=simple_map_function, map_iterdata=[1, 2, 3], extra_args=(10,)
    )
    assert run_task(op) == [11, 12, 13]
    op = PyWrenMapOperator(
        task_id="t", map_function=simple_map_function, map_iterdata=[{"x": 1}, {"x": 2}], extra_args={"y": 10}
    )
    assert run_task(op) == [11, 12]


def test_extra_env(lithops_conn: str) -> None:
    op = PyWrenMapOperator(
        task_id="t", map_function=echo_env_flag, map_iterdata=[1, 2], extra_env={"LITHOPS_TEST_FLAG": "hello"}
    )
    assert run_task(op) == ["hello", "hello"]


def test_futures_list_chaining(lithops_conn: str) -> None:
    def add_one(x):
        return x + 1

    def mul_two(x):
        return x * 2

    first = run_task(PyWrenMapOperator(task_id="add_one", map_function=add_one, map_iterdata=[1, 2, 3]))
    second = PyWrenMapOperator(task_id="mul_two", map_function=mul_two, iterdata_from_task="add_one")
    assert run_task(second, {"add_one": first}) == [4, 6, 8]


def test_chaining_plain_futures_hides_consumed_outputs(lithops_conn: str) -> None:
    """The second task's result is what Lithops' ``get_result()`` gives: only the last
    job's outputs (the first job's were consumed by the second). Lithops' test runs it for
    a list, a tuple and a slice of futures; between tasks the results travel as XCom (a
    JSON list), so the one case here is the list."""
    first = run_task(PyWrenMapOperator(task_id="first", map_function=lambda x: x * x, map_iterdata=[1, 2]))
    second = PyWrenMapOperator(task_id="second", map_function=lambda x: x * 2, iterdata_from_task="first")
    assert run_task(second, {"first": first}) == [2, 8]
