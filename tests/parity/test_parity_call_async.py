"""Lithops' ``tests/test_call_async.py`` (3.8), restated as PyWrenCallAsyncOperator tasks."""

from __future__ import annotations

from functools import partial

import pytest
from lithops.tests.functions import SideEffect, passthrough_function, simple_map_function
from parity_helpers import run_task

from pywren_deferrable import PyWrenCallAsyncOperator

pytestmark = pytest.mark.integration


def hello_world(param):
    return "Hello World!"


def test_hello_world(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=hello_world, data="")
    assert run_task(op) == "Hello World!"


def test_lambda_fn(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=lambda x: " ".join(x), data=["a", "b"])
    assert run_task(op) == "a b"


def test_set_iterdata(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=simple_map_function, data=(4, 6))
    assert run_task(op) == 10


def test_partial_function(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=partial(simple_map_function, 4), data=6)
    assert run_task(op) == 10


def test_dict_iterdata(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=simple_map_function, data={"x": 2, "y": 8})
    assert run_task(op) == 10


def test_object_with_side_effects(lithops_conn: str) -> None:
    op = PyWrenCallAsyncOperator(task_id="t", func=passthrough_function, data=SideEffect())
    assert run_task(op) == 5
