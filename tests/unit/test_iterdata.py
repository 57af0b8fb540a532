"""Map inputs as Lithops takes them, and the parameters Lithops injects (issue 13, items 1, 2, 4).

Where Lithops has a pure function for it, the operator's result is compared with Lithops'
own (``lithops.utils.format_data`` / ``verify_args``) on the same input.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from airflow.sdk import DAG
from lithops.utils import format_data, verify_args

from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator
from pywren_deferrable.decorators import pywren_task
from pywren_deferrable.iterdata import INJECTED_PARAMETERS, as_call_list, user_signature
from pywren_deferrable.operators.map import rewrite_object_urls


def add(x, y=0):
    return x + y


def pair(x, y):
    return x + y


def count(obj):
    return obj


def count_with(obj, id, storage, factor=1):
    return obj, id, storage, factor


def key_then_obj(key, obj):
    return key, obj


def with_id(x, id):
    return x, id


def with_everything(x, id, storage, ibm_cos, rabbitmq, y=0):
    return x, y


def total(results):
    return sum(results)


def make(**kwargs: Any) -> PyWrenMapOperator:
    return PyWrenMapOperator(**{"task_id": "t", "map_function": add, "map_iterdata": [1], **kwargs})


# -- item 1: shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "cos://bucket/prefix/",
        "cos://bucket/weather_data",
        "s3://bucket/ES/",
        "minio://bucket/prefix/",
        "ibm_cos://bucket/prefix/",
        "aws_s3://bucket/key.csv",
        "ceph://bucket/",
        "https://127.0.0.1:8000/data/a.txt",
        "http://example.org/b.txt",
    ],
)
def test_bare_url_string_is_one_input_as_in_lithops(url: str) -> None:
    op = make(map_function=count, map_iterdata=url)
    assert op.map_iterdata == url
    assert op.resolved_iterdata({}) == format_data(url, None) == [url]


@pytest.mark.parametrize("text", ["abc", "bucket/prefix/", "/local/path.csv", "ftp://host/x", "cos:/bucket"])
def test_bare_string_that_is_no_url_is_refused_naming_the_parameter(text: str) -> None:
    with pytest.raises(
        TypeError, match=rf"map_iterdata must be a list of call inputs or a storage URL .*{text}"
    ):
        make(map_function=count, map_iterdata=text)


@pytest.mark.parametrize(
    "iterdata",
    [
        [1, 2, 3],
        range(4),
        {3, 1, 2},
        [(1, 2), (3, 4)],
        [{"x": 1, "y": 2}],
        (5, 6),
        ["s3://b/p/", "s3://b/q/"],
    ],
)
def test_call_list_equals_lithops_format_data(iterdata: Any) -> None:
    assert as_call_list("map_iterdata", iterdata) == format_data(iterdata, None)


def test_tuple_is_one_call_with_positional_arguments_as_in_lithops() -> None:
    op = make(map_function=pair, map_iterdata=(2, 3))
    iterdata, extra = op.calls_for(op.resolved_iterdata({}), "minio")
    assert verify_args(pair, iterdata, extra) == verify_args(pair, (2, 3), None) == [{"x": 2, "y": 3}]


def test_generator_is_not_consumed_at_parse_time_and_read_at_execute() -> None:
    pulled: list[int] = []

    def produce() -> Any:
        for i in range(3):
            pulled.append(i)
            yield i

    op = make(map_iterdata=produce())
    assert pulled == []  # parse time: untouched (a re-parse makes a new one anyway)
    assert op.resolved_iterdata({}) == [0, 1, 2]
    assert pulled == [0, 1, 2]


def test_generator_survives_template_rendering_unconsumed() -> None:
    pulled: list[int] = []

    def produce() -> Any:
        for i in range(2):
            pulled.append(i)
            yield i

    op = make(map_iterdata=produce())
    op.render_template_fields({"ds": "2025-01-01"})
    assert pulled == []
    assert op.resolved_iterdata({}) == [0, 1]


def test_xcom_iterdata_may_be_a_url_string() -> None:
    class TI:
        def xcom_pull(self, task_ids: str) -> Any:
            return "cos://bucket/ES/"

    op = PyWrenMapOperator(task_id="t", map_function=count, iterdata_from_task="up")
    assert op.resolved_iterdata({"ti": TI()}) == ["cos://bucket/ES/"]


# -- object URLs: which inputs are rewritten ---------------------------------------------


def test_object_urls_point_at_the_connection_storage_only_for_obj_inputs() -> None:
    items = ["s3://b/p/", ("cos://b/k", "x"), {"obj": "cos://b/q/", "factor": 2}, "minio://b/r"]
    assert rewrite_object_urls(count_with, items, "minio") == [
        "minio://b/p/",
        ("minio://b/k", "x"),
        {"obj": "minio://b/q/", "factor": 2},
        "minio://b/r",
    ]
    # obj second: a bare element binds to ``key`` (Lithops binds it to the first parameter).
    assert rewrite_object_urls(key_then_obj, [("s3://b/k1", "s3://b/k2"), "s3://b/k3"], "ceph") == [
        ("s3://b/k1", "ceph://b/k2"),
        "s3://b/k3",
    ]
    # A function without ``obj`` gets URLs as plain data, untouched.
    assert rewrite_object_urls(add, ["s3://b/p/", {"x": "cos://b/k"}], "minio") == [
        "s3://b/p/",
        {"x": "cos://b/k"},
    ]
    # Not an S3-compatible storage: Lithops reads s3:// and cos:// itself.
    assert rewrite_object_urls(count, ["s3://b/p/"], "localhost") == ["s3://b/p/"]


def test_obj_inputs_must_be_urls() -> None:
    with pytest.raises(TypeError, match=r"map_iterdata: count takes obj, so its obj inputs are storage URLs"):
        make(map_function=count, map_iterdata=[1, 2])
    with pytest.raises(TypeError, match=r"count_with takes obj.* got 5"):
        make(map_function=count_with, map_iterdata=[{"obj": 5, "factor": 1}])


# -- item 2: iterdata_from_task with an empty map_iterdata ---------------------------------


@pytest.mark.parametrize("empty", [None, [], ()])
def test_empty_map_iterdata_with_iterdata_from_task_works(empty: Any) -> None:
    class TI:
        def xcom_pull(self, task_ids: str) -> Any:
            return [4, 5]

    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=empty, iterdata_from_task="up")
    assert op.map_iterdata is None
    assert op.resolved_iterdata({"ti": TI()}) == [4, 5]
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=add,
        reduce_function=total,
        map_iterdata=empty,
        iterdata_from_task={"x": "up"},
    )
    assert op.resolved_iterdata({"ti": TI()}) == [{"x": 4}, {"x": 5}]


@pytest.mark.parametrize("given", [[1], "cos://b/p/", "{{ ti.xcom_pull('a') }}", range(2)])
def test_non_empty_map_iterdata_with_iterdata_from_task_is_refused(given: Any) -> None:
    with pytest.raises(
        ValueError,
        match=r"map_iterdata and iterdata_from_task both give the inputs: leave map_iterdata empty",
    ):
        PyWrenMapOperator(task_id="t", map_function=count, map_iterdata=given, iterdata_from_task="up")


# -- item 4: injected parameters ----------------------------------------------------------


def test_injected_parameters_are_lithops_own() -> None:
    from lithops.utils import _INJECTED_ARGS

    assert set(INJECTED_PARAMETERS) == set(_INJECTED_ARGS)


def test_inputs_bind_to_the_user_parameters_not_to_injected_ones() -> None:
    assert list(user_signature(with_everything).parameters) == ["x", "y"]
    op = make(map_function=with_id, map_iterdata=[1, 2], extra_params={})
    assert op.calls_for([1, 2], "minio") == ([1, 2], {})
    op = make(map_function=with_everything, map_iterdata=[1, (2, 3)], extra_params={"y": 9})
    iterdata, extra = op.calls_for([1, (2,)], "minio")
    assert iterdata == [{"x": 1}, {"x": 2}]  # not {"x": ..., "id": ...}
    assert verify_args(with_everything, iterdata, extra) == [{"x": 1, "y": 9}, {"x": 2, "y": 9}]


def test_defaults_are_filled_in_so_lithops_accepts_the_bound_dicts() -> None:
    def three(a, b, c=7):
        return a + b + c

    op = make(map_function=three, map_iterdata=[1, 2], extra_params={"b": 10})
    iterdata, extra = op.calls_for([1, 2], "minio")
    assert verify_args(three, iterdata, extra) == [{"a": 1, "c": 7, "b": 10}, {"a": 2, "c": 7, "b": 10}]


@pytest.mark.parametrize("name", sorted(INJECTED_PARAMETERS))
def test_a_value_for_an_injected_parameter_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=rf"map_iterdata\[1\] gives '{name}', which Lithops fills in itself"):
        make(map_function=with_everything, map_iterdata=[{"x": 1}, {"x": 2, name: 5}])
    with pytest.raises(ValueError, match=rf"extra_params gives '{name}', which Lithops fills in itself"):
        make(map_function=with_everything, map_iterdata=[1], extra_params={name: 5})
    with pytest.raises(ValueError, match=rf"data gives '{name}', which Lithops fills in itself"):
        PyWrenCallAsyncOperator(task_id="t", func=with_everything, data={"x": 1, name: 5})


def test_call_async_binds_like_lithops() -> None:
    PyWrenCallAsyncOperator(task_id="t", func=with_id, data={"x": 1})
    PyWrenCallAsyncOperator(task_id="t", func=with_id, data=(1,))
    PyWrenCallAsyncOperator(task_id="t", func=count_with, data={"obj": "cos://b/k", "factor": 2})
    # Lithops wants a dict to name even the parameters with defaults: refused at parse, as it would.
    with pytest.raises(TypeError, match=r"also needs \['factor'\]"):
        PyWrenCallAsyncOperator(task_id="t", func=count_with, data={"obj": "cos://b/k"})
    with pytest.raises(ValueError, match="Check the args names"):
        verify_args(count_with, [{"obj": "cos://b/k"}], None)
    with pytest.raises(TypeError, match=r"data names \['x'\], but pair\(x, y\) also needs \['y'\]"):
        PyWrenCallAsyncOperator(task_id="t", func=pair, data={"x": 1})
    # data_from_task fills in its names at run time.
    PyWrenCallAsyncOperator(task_id="t", func=pair, data={"x": 1}, data_from_task={"y": "up"})
    # A list is one argument, as in Lithops' call_async.
    op = PyWrenCallAsyncOperator(task_id="t", func=count, data=["a", "b"])
    assert op.call_data({}) == ["a", "b"]
    assert verify_args(count, [op.call_data({})], None) == [{"obj": ["a", "b"]}]


def test_reduce_function_must_take_the_results() -> None:
    def two(a, b):
        return a

    with pytest.raises(
        TypeError, match=r"reduce_function \(called with the list of map results\) does not fit two"
    ):
        PyWrenMapReduceOperator(task_id="t", map_function=add, map_iterdata=[1], reduce_function=two)

    def with_storage(results, storage, id):
        return results

    PyWrenMapReduceOperator(task_id="t", map_function=add, map_iterdata=[1], reduce_function=with_storage)


def test_ibm_cos_and_rabbitmq_parameters_are_left_to_lithops() -> None:
    """The ``ibm_cos`` client needs the ibm_cos storage backend (not on the embedded S3
    endpoint) and ``rabbitmq`` a broker: their end-to-end runs are not here; what the
    operator does with them is: never bound to an input, never required of one."""

    def uses_cos(key, ibm_cos):
        return key

    def uses_rabbit(x, rabbitmq):
        return x

    op = make(map_function=uses_cos, map_iterdata=["k1", ("k2",)], extra_params={})
    assert verify_args(uses_cos, *op.calls_for(["k1", ("k2",)], "ibm_cos")) == [{"key": "k1"}, {"key": "k2"}]
    op = make(map_function=uses_rabbit, map_iterdata=[{"x": 1}], extra_params=None)
    assert verify_args(uses_rabbit, *op.calls_for([{"x": 1}], "minio")) == [{"x": 1}]
    PyWrenCallAsyncOperator(task_id="t", func=uses_cos, data={"key": "k"})


def test_decorators_leave_injected_parameters_to_lithops() -> None:
    with DAG(dag_id="pywren_unit_injected", schedule=None, start_date=datetime.datetime(2025, 1, 1)):

        @pywren_task.map
        def numbered(x, id, storage):
            return x, id

        @pywren_task.map(extra_params={"y": 1})
        def shifted(id, x, y):
            return x + y

        @pywren_task.call_async
        def single(id, x):
            return x

        mapped = numbered([1, 2])
        extra = shifted([3])
        once = single(5)
    assert mapped.operator.map_function.__name__ == "numbered"
    assert "id" in __import__("inspect").signature(mapped.operator.map_function).parameters
    assert extra.operator.calls_for([3], "minio") == ([{"x": 3}], {"y": 1})
    assert once.operator.data == {"x": 5}


# -- item 4: extra_args, the alias -------------------------------------------------------


def test_extra_args_is_an_alias_of_extra_params() -> None:
    assert make(extra_args={"y": 2}).extra_params == {"y": 2}
    assert make(map_function=pair, extra_args=[3]).extra_params == (3,)
    assert make(map_function=pair, extra_args=(3,)).extra_params == (3,)
    op = PyWrenMapReduceOperator(
        task_id="t", map_function=pair, map_iterdata=[1, 2], extra_args=[10], reduce_function=total
    )
    assert verify_args(pair, *op.calls_for([1, 2], "minio")) == verify_args(pair, [1, 2], (10,))


def test_extra_args_and_extra_params_together_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"extra_args is another name of extra_params .* set one of them, not both"
    ):
        make(extra_args={"y": 2}, extra_params={"y": 3})


def test_seed_family_extra_args_list_with_a_url_string() -> None:
    """The successor plugin's meteo DAG: ``map_iterdata='cos://bucket/weather_data'``,
    ``extra_args=[countries, bucket]`` (positional, as a list)."""

    def parse_data(obj, countries, bucket):
        return obj

    op = make(
        map_function=parse_data, map_iterdata="cos://bucket/weather_data", extra_args=[["ES"], "bucket"]
    )
    iterdata, extra = op.calls_for(op.resolved_iterdata({}), "minio")
    assert verify_args(parse_data, iterdata, extra) == [
        {"obj": "minio://bucket/weather_data", "countries": ["ES"], "bucket": "bucket"}
    ]
    # What Lithops itself makes of it, on an ibm_cos storage (no rewrite needed there).
    assert verify_args(parse_data, "cos://bucket/weather_data", [["ES"], "bucket"]) == [
        {"obj": "cos://bucket/weather_data", "countries": ["ES"], "bucket": "bucket"}
    ]


@pytest.mark.parametrize(
    ("function", "iterdata", "extra"),
    [
        (pair, [1, 2], None),
        (pair, [(1, 2, 3)], None),
        (pair, [{"x": 1}], None),
        (pair, [(1,)], {"y": 2}),
        (pair, [{"x": 1}], (2,)),
        (add, [(1, 2)], (3,)),
    ],
)
def test_what_lithops_refuses_at_submit_is_refused_at_parse(function: Any, iterdata: Any, extra: Any) -> None:
    try:
        verify_args(function, iterdata, extra)
    except Exception:
        pass
    else:
        if not isinstance(extra, dict):
            pytest.fail("Lithops accepts this input")
    if isinstance(extra, dict):
        # Lithops appends a dict's keys to a tuple input (it refuses it): the seed binds instead.
        op = make(map_function=function, map_iterdata=iterdata, extra_params=extra)
        assert verify_args(function, *op.calls_for(iterdata, "minio")) == [{"x": 1, "y": 2}]
        return
    with pytest.raises(TypeError, match=r"map_iterdata\[0\]"):
        make(map_function=function, map_iterdata=iterdata, extra_params=extra)


def test_inputs_holding_xcomargs_are_checked_when_rendered_not_at_parse() -> None:
    with DAG(dag_id="pywren_unit_nested_xcom", schedule=None, start_date=datetime.datetime(2025, 1, 1)):
        upstream = make(task_id="upstream")
        downstream = make(task_id="downstream", map_function=pair, map_iterdata=[(1, upstream.output)])
    assert upstream.task_id in downstream.upstream_task_ids
    # Rendered, the inputs are checked like any other.
    downstream.map_iterdata = [(1, 2, 3)]
    with pytest.raises(TypeError, match=r"map_iterdata\[0\] does not fit pair"):
        downstream.job_iterdata({}, {"lithops": {"storage": "minio"}})
