"""A DAG file's payload functions: some use Airflow objects (each must be refused at parse
time), the others merely live next to them (each must be accepted and shipped by value).

Like a real DAG file it imports Airflow at the top and builds a DAG.
"""

from __future__ import annotations

import math

import airflow.sdk as sdk
from airflow.providers.standard.hooks.filesystem import FSHook
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, BaseHook, Connection, Variable, get_current_context
from airflow.sdk.execution_time.xcom import XCom

with DAG(dag_id="dag_file_payloads", schedule=None) as dag:
    pass

OFFSET = 3


def variable_get(x):
    return x * int(Variable.get("factor"))


def connection_get(x):
    return Connection.get("lithops_default").host + str(x)


def base_hook_connection(x):
    return BaseHook.get_connection("lithops_default").host + str(x)


def hook_instance(x):
    return FSHook().get_path() + str(x)


def xcom_get(x):
    return XCom.get_one(key="k", dag_id="d", task_id="t", run_id="r") or x


def context_get(x):
    return get_current_context()["ti"].task_id + str(x)


def context_imported_inside(x):
    from airflow.sdk import get_current_context as current

    return current()["ds"] + str(x)


def operator_built(x):
    return PythonOperator(task_id=f"t{x}", python_callable=print)


def module_alias(x):
    return sdk.Variable.get("factor") + str(x)


def the_dag(x):
    return dag.dag_id + str(x)


def _helper_with_variable():
    return Variable.get("factor")


def calls_a_helper(x):
    return _helper_with_variable() + str(x)


USES_AIRFLOW = {
    "variable_get": "airflow.sdk.definitions.variable.Variable",
    "connection_get": "airflow.sdk.definitions.connection.Connection",
    "base_hook_connection": "airflow.sdk.bases.hook.BaseHook",
    "hook_instance": "airflow.providers.standard.hooks.filesystem.FSHook",
    "xcom_get": "airflow.sdk.bases.xcom.BaseXCom",
    "context_get": "airflow.sdk.definitions.context.get_current_context",
    "context_imported_inside": "import airflow.sdk",
    "operator_built": "airflow.providers.standard.operators.python.PythonOperator",
    "module_alias": "airflow.sdk",
    "the_dag": "airflow.sdk.definitions.dag.DAG",
    "calls_a_helper": "airflow.sdk.definitions.variable.Variable",
}


# -- no Airflow inside: accepted --------------------------------------------------------


def _square(x):
    return x * x


def plain(x):
    return _square(x) + OFFSET


def uses_math(a, b):
    return math.hypot(a, b)


def names_airflow_in_a_string(x):
    return f"airflow.sdk.Variable {x}"


def nested(x):
    def inner(y):
        return y + OFFSET

    return inner(x)


FREE_OF_AIRFLOW = {"plain": 12, "nested": 6, "names_airflow_in_a_string": "airflow.sdk.Variable 3"}
