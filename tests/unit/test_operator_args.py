"""Unit tests of the operators' constructor checks and of bind_iterdata (no network)."""

from __future__ import annotations

import copy
import datetime

import pytest
from airflow.sdk import DAG

from pywren_deferrable.operators.map import PyWrenMapOperator, bind_iterdata


def add(x, y=0):
    return x + y


def three(a, b, c=0):
    return a + b + c


def make(**kwargs):
    args = {"task_id": "t", "map_function": add, "map_iterdata": [1, 2, 3]}
    args.update(kwargs)
    return PyWrenMapOperator(**args)


# -- rejected arguments ---------------------------------------------------------------


@pytest.mark.parametrize("function", [None, "add", 3, [add]])
def test_non_callable_map_function(function):
    with pytest.raises(TypeError, match="map_function"):
        make(map_function=function)


@pytest.mark.parametrize(
    ("iterdata", "error", "match"),
    [
        (
            "abc",
            TypeError,
            r"map_iterdata must be a list of call inputs or a storage URL .* got the bare string 'abc'",
        ),
        (
            "/data/x.csv",
            TypeError,
            r"got the bare string '/data/x.csv'; write \['/data/x.csv'\] for one call",
        ),
        ("ftp://host/x", TypeError, r"got the bare string 'ftp://host/x'"),
        ("cos:///key", ValueError, r"map_iterdata: the object URL 'cos:///key' names no bucket"),
        (b"abc", TypeError, r"map_iterdata must be a list of call inputs, got bare bytes"),
        ({"x": 1}, TypeError, r"map_iterdata must be a list of call inputs, got a dict"),
        ([], ValueError, r"map_iterdata is empty"),
        (range(0), ValueError, r"map_iterdata is empty"),
        (set(), ValueError, r"map_iterdata is empty"),
        (
            (1, 2, 3),
            TypeError,
            r"map_iterdata\[0\] does not fit add\(x, y=0\): too many positional arguments",
        ),
        (
            5,
            TypeError,
            r"map_iterdata must be a list of call inputs \(or a range, set, tuple, generator or storage URL\), got int",
        ),
        (frozenset({1}), TypeError, r"got frozenset"),
        (None, TypeError, r"map_iterdata is required \(or iterdata_from_task\)"),
    ],
)
def test_bad_map_iterdata(iterdata, error, match):
    with pytest.raises(error, match=match):
        make(map_iterdata=iterdata)


def test_chunk_size_and_chunk_n_exclusive():
    with pytest.raises(ValueError, match=r"chunk_size and chunk_n"):
        make(map_iterdata=["s3://bucket/prefix/"], chunk_size=1024, chunk_n=4)


@pytest.mark.parametrize(
    ("name", "value", "error", "match"),
    [
        ("chunk_size", 0, ValueError, r"chunk_size must be >= 1, got 0"),
        ("chunk_size", -1, ValueError, r"chunk_size must be >= 1, got -1"),
        ("chunk_size", 1.5, TypeError, r"chunk_size must be an int, got float"),
        ("chunk_size", True, TypeError, r"chunk_size must be an int, got bool"),
        ("chunk_size", "10", TypeError, r"chunk_size must be an int, got str"),
        ("chunk_n", 0, ValueError, r"chunk_n must be >= 1"),
        ("chunk_n", False, TypeError, r"chunk_n must be an int"),
        ("invoke_pool_threads", 0, ValueError, r"invoke_pool_threads must be >= 1"),
        ("runtime_memory", 0, ValueError, r"runtime_memory must be >= 1, got 0"),
        ("runtime_memory", "big", TypeError, r"runtime_memory must be an int, got str"),
        ("runtime_memory", 256.0, TypeError, r"runtime_memory must be an int, got float"),
        ("timeout", 0, ValueError, r"timeout must be >= 1, got 0"),
        ("timeout", "60", TypeError, r"timeout must be an int"),
        ("extra_env", {"A": 1}, TypeError, r"extra_env must map str to str"),
        ("extra_env", {1: "a"}, TypeError, r"extra_env must map str to str"),
        ("extra_env", ["A=1"], TypeError, r"extra_env must be a dict of str to str, got list"),
        ("include_modules", "numpy", TypeError, r"include_modules must be a list of module names, got str"),
        ("include_modules", ["numpy", ""], TypeError, r"include_modules must hold module names"),
        ("exclude_modules", "numpy", TypeError, r"exclude_modules must be a list of module names"),
        ("exclude_modules", [None], TypeError, r"exclude_modules must hold module names"),
        ("pywren_executor_config", "x", TypeError, r"pywren_executor_config must be a dict, got str"),
        ("pywren_executor_config", ["runtime"], TypeError, r"pywren_executor_config must be a dict"),
        (
            "pywren_executor_config",
            {"code_engine": "big"},
            TypeError,
            r"pywren_executor_config\['code_engine'\]",
        ),
        (
            "pywren_executor_config",
            {"lithops": {"backend": "nope", "storage": "minio"}},
            ValueError,
            r"unknown Lithops compute backend 'nope'",
        ),
        (
            "pywren_executor_config",
            {"storage": "nope"},
            ValueError,
            r"unknown Lithops storage backend 'nope'",
        ),
        ("job_timeout", -1, ValueError, r"job_timeout must be > 0, got -1"),
        ("job_timeout", 0, ValueError, r"job_timeout must be > 0"),
        ("job_timeout", "1h", TypeError, r"job_timeout must be a number of seconds"),
        ("poll_interval", -5, ValueError, r"poll_interval must be > 0"),
        ("lithops_conn_id", "", ValueError, r"lithops_conn_id must not be empty"),
        ("lithops_conn_id", None, TypeError, r"lithops_conn_id must be a str"),
        ("extra_params", 5, TypeError, r"extra_params must be a dict of keyword arguments"),
        ("extra_params", {1: "a"}, TypeError, r"extra_params keys must be argument names"),
    ],
)
def test_bad_argument_raises_naming_it(name, value, error, match):
    with pytest.raises(error, match=match):
        make(**{name: value})


def test_pywren_executor_config_unknown_backend_rejected():
    with pytest.raises(ValueError):
        make(pywren_executor_config={"lithops": {"backend": "nope"}})


def test_pywren_executor_config_unknown_backend_named():
    with pytest.raises(ValueError, match="nope"):
        make(pywren_executor_config={"lithops": {"backend": "nope"}})


@pytest.mark.parametrize(
    "config", [{"backend": "code_engine"}, {"lithops": {"backend": "aws_lambda"}}, {"backend": "k8s"}]
)
def test_valid_backend_override_accepted_at_parse_time(config):
    op = make(pywren_executor_config=config)
    assert op.pywren_executor_config == config


# -- accepted arguments ---------------------------------------------------------------


def test_valid_defaults():
    op = make()
    assert op.map_iterdata == [1, 2, 3]
    assert op.map_function is add
    assert op.extra_params is None
    assert op.chunk_size is None
    assert op.chunk_n is None
    assert op.runtime_memory == 256
    assert op.lithops_conn_id == "lithops_default"
    assert op.pywren_executor_config == {}
    assert op.job_timeout is None


def test_valid_values_are_normalized():
    generator = (x for x in (1, 2))
    op = make(
        map_iterdata=generator,
        extra_params=[7],
        chunk_size=1024,
        job_timeout=30,
        include_modules=("mod_a",),
        extra_env={"A": "1"},
        pywren_executor_config={"runtime": "me/rt:1", "code_engine": {"runtime_cpu": 1}},
    )
    # A generator is read when the task runs, not when the DAG is parsed.
    assert op.map_iterdata is generator
    assert op.resolved_iterdata({}) == [1, 2]
    assert op.extra_params == (7,)
    assert op.chunk_size == 1024
    assert op.job_timeout == 30.0
    assert isinstance(op.job_timeout, float)
    assert op.include_modules == ["mod_a"]
    assert op.extra_env == {"A": "1"}


def test_template_fields():
    fields = PyWrenMapOperator.template_fields
    assert "map_iterdata" in fields
    assert "extra_params" in fields
    assert "pywren_executor_config" in fields
    assert "extra_env" in fields


def test_map_iterdata_xcomarg_accepted():
    with DAG(dag_id="pywren_unit_args", schedule=None, start_date=datetime.datetime(2025, 1, 1)):
        upstream = make(task_id="upstream")
        downstream = make(task_id="downstream", map_iterdata=upstream.output, extra_params={"y": 1})
    assert downstream.map_iterdata is not None
    assert not isinstance(downstream.map_iterdata, list)
    assert downstream.map_iterdata.operator is upstream
    assert upstream.task_id in downstream.upstream_task_ids
    assert downstream.extra_params == {"y": 1}


def test_map_iterdata_jinja_string_accepted():
    template = '{{ ti.xcom_pull("x") }}'
    op = make(map_iterdata=template)
    assert op.map_iterdata == template


def test_unrendered_iterdata_rejected_at_execute():
    op = make(map_iterdata='{{ ti.xcom_pull("x") }}')
    with pytest.raises(TypeError, match="map_iterdata was not rendered"):
        op.resolved_iterdata({})


def test_rendered_iterdata_checked_again():
    op = make(map_iterdata='{{ ti.xcom_pull("x") }}')
    op.map_iterdata = "rendered-but-a-string"
    with pytest.raises(TypeError, match="got the bare string 'rendered-but-a-string'"):
        op.resolved_iterdata({})
    op.map_iterdata = []
    with pytest.raises(ValueError, match="map_iterdata is empty"):
        op.resolved_iterdata({})
    op.map_iterdata = [4, 5]
    assert op.resolved_iterdata({}) == [4, 5]
    op.map_iterdata = "cos://bucket/prefix/"  # a rendered URL is one input, as in Lithops
    assert op.resolved_iterdata({}) == ["cos://bucket/prefix/"]
    op.map_iterdata = iter([])
    with pytest.raises(ValueError, match="map_iterdata is empty"):
        op.resolved_iterdata({})


# -- bind_iterdata --------------------------------------------------------------------


def test_bind_iterdata_single_values():
    assert bind_iterdata(add, [1, 2, 3], {"y": 1}) == ([{"x": 1}, {"x": 2}, {"x": 3}], {"y": 1})


def test_bind_iterdata_tuples_bind_positionally():
    items, extra = bind_iterdata(three, [(1, 2), (3, 4)], {"c": 5})
    assert items == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert extra == {"c": 5}


def test_bind_iterdata_dict_items_untouched():
    iterdata = [{"x": 1}, 2, {"x": 3, "y": 9}]
    items, _ = bind_iterdata(add, iterdata, {"y": 1})
    assert items == [{"x": 1}, {"x": 2}, {"x": 3, "y": 9}]


def test_bind_iterdata_does_not_mutate_input():
    iterdata = [{"x": [1]}, {"x": [2]}]
    before = copy.deepcopy(iterdata)
    items, _ = bind_iterdata(add, iterdata, {"y": 1})
    assert items == before
    items[0]["x"].append(99)
    items[1]["z"] = 0
    assert iterdata == before
    assert items[0] is not iterdata[0]


def test_bind_iterdata_without_dict_extra_params_keeps_items():
    iterdata = [1, (2, 3), {"x": 4}]
    assert bind_iterdata(add, iterdata, None) == ([1, (2, 3), {"x": 4}], None)
    assert bind_iterdata(add, iterdata, (5,)) == ([1, (2, 3), {"x": 4}], (5,))
    assert bind_iterdata(add, iterdata, {}) == ([1, (2, 3), {"x": 4}], {})


def test_bind_iterdata_without_dict_extra_params_copies_items():
    iterdata = [{"x": [1]}]
    items, _ = bind_iterdata(add, iterdata, None)
    items[0]["x"].append(2)
    assert iterdata == [{"x": [1]}]


@pytest.mark.parametrize(
    ("iterdata", "index"),
    [([(1, 2, 3)], 0), ([1, 2, (1, 2, 3)], 2), ([5, (1, 2, 3, 4, 5)], 1)],
)
def test_bind_iterdata_item_that_does_not_fit(iterdata, index):
    with pytest.raises(TypeError, match=rf"map_iterdata\[{index}\] does not fit add"):
        bind_iterdata(add, iterdata, {"y": 1})
