"""A failed call of a function defined in a DAG file shows that file in its traceback."""

from __future__ import annotations

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException

from pywren_deferrable import PyWrenMapOperator

pytestmark = pytest.mark.integration

# This module imports Airflow, as a DAG file does: its functions travel by value.
with DAG(dag_id="remote_traceback_dag", schedule=None):
    pass


def check_positive(x):
    if x < 0:
        raise ValueError(f"negative input {x}")  # the line the traceback must show
    return x


def scale(x):
    return 10 * check_positive(x)


def test_frames_point_at_the_dag_file(lithops_conn: str) -> None:
    op = PyWrenMapOperator(task_id="t", map_function=scale, map_iterdata=[1, -2], deferrable=False)
    with pytest.raises(AirflowException) as caught:
        op.execute({})
    message = str(caught.value)
    assert "<dynamic-code>" not in message
    assert f'File "{__file__}", line {scale.__code__.co_firstlineno + 1}, in scale' in message
    assert "return 10 * check_positive(x)" in message
    assert (
        f'File "{__file__}", line {check_positive.__code__.co_firstlineno + 2}, in check_positive' in message
    )
    assert 'raise ValueError(f"negative input {x}")  # the line the traceback must show' in message
    assert "ValueError: negative input -2" in message
