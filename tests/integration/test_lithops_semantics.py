"""The same input through plain ``lithops.FunctionExecutor`` and through the operators:
the same calls (per job), the same chunks, the same reducers, the same results
(issue 13, items 1, 2 and 4). Real Lithops (localhost compute) on the embedded S3
endpoint; http(s) object URLs come from a local HTTP server with Range support.

Plain Lithops is given the storage backend's own scheme (``minio://``): for it ``s3://``
means AWS S3 and ``cos://`` IBM COS. The operators are given ``s3://`` and ``cos://`` too,
which mean the Connection's storage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from http_files import serve_files
from lithops_plain import PlainRun, run_plain
from payloads.functions import (
    call_id,
    concat,
    country_temperatures,
    describe_chunk,
    described_total,
    hello,
    mean_of_all,
    pair_sum,
    parse_weather,
    round_trip,
    words,
)

from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator
from pywren_deferrable.embedded import LocalS3Server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TEXTS = {
    "a.txt": b"".join(b"alpha beta %d\n" % i for i in range(60)),  # 60 lines, 180 words
    "b.txt": b"one two\nthree\n",
    "c.txt": b"gamma delta epsilon zeta\n" * 9,  # 9 lines, 36 words
}


class FakeTI:
    """Just enough of a task instance for ``xcom_pull``."""

    dag_id = "lithops_semantics"

    def __init__(self, xcoms: dict[str, Any] | None = None) -> None:
        self.xcoms = xcoms or {}

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcoms[task_ids]


def via_operator(op: Any, xcoms: dict[str, Any] | None = None) -> PlainRun:
    """Run ``op`` on the worker (``deferrable=False``: the trigger's loop, run here)."""
    op.deferrable = False
    results = op.execute({"ti": FakeTI(xcoms)})
    return PlainRun(calls=dict(op._submitted.total_calls), results=results)


@pytest.fixture
def texts(s3_server: LocalS3Server, bucket: str) -> str:
    client = s3_server.client()
    for name, body in TEXTS.items():
        client.put_object(Bucket=bucket, Key=f"texts/{name}", Body=body)
    client.put_object(Bucket=bucket, Key="other/x.txt", Body=b"not under the prefix\n")
    return bucket


@pytest.fixture
def http_texts(tmp_path: Path) -> Iterator[str]:
    """The texts on a local HTTP server that answers HEAD and Range requests."""
    with serve_files(tmp_path, TEXTS) as base:
        yield base


def compare(plain: PlainRun, operator: PlainRun) -> None:
    assert plain.error is None, plain.error
    assert operator.calls == plain.calls
    assert operator.results == plain.results


def plain_map(
    config: dict[str, Any], function: Callable[..., Any], make: Callable[[], Any], **kw: Any
) -> PlainRun:
    return run_plain(config, "map", function, make, **kw)


# -- a bare prefix, object keys, chunking ---------------------------------------------


@pytest.mark.parametrize("scheme", ["s3", "cos", "minio"])
def test_bare_prefix_string(
    lithops_conn: str, lithops_config: dict[str, Any], texts: str, scheme: str
) -> None:
    plain = plain_map(lithops_config, describe_chunk, lambda: f"minio://{texts}/texts/")
    op = PyWrenMapOperator(
        task_id="t", map_function=describe_chunk, map_iterdata=f"{scheme}://{texts}/texts/"
    )
    compare(plain, via_operator(op))
    assert plain.calls == {"M000": 3}


def test_list_of_object_urls_and_prefixes(
    lithops_conn: str, lithops_config: dict[str, Any], texts: str
) -> None:
    plain = plain_map(
        lithops_config, describe_chunk, lambda: [f"minio://{texts}/texts/c.txt", f"minio://{texts}/other/"]
    )
    op = PyWrenMapOperator(
        task_id="t",
        map_function=describe_chunk,
        map_iterdata=[f"cos://{texts}/texts/c.txt", f"s3://{texts}/other/"],
    )
    compare(plain, via_operator(op))
    assert plain.calls == {"M000": 2}


@pytest.mark.parametrize(
    ("option", "lithops_option", "value"),
    [("chunk_size", "obj_chunk_size", 100), ("chunk_n", "obj_chunk_number", 3)],
)
def test_chunking_of_a_prefix(
    lithops_conn: str,
    lithops_config: dict[str, Any],
    texts: str,
    option: str,
    lithops_option: str,
    value: int,
) -> None:
    plain = plain_map(
        lithops_config, describe_chunk, lambda: f"minio://{texts}/texts/", **{lithops_option: value}
    )
    op = PyWrenMapOperator(
        task_id="t", map_function=describe_chunk, map_iterdata=f"s3://{texts}/texts/", **{option: value}
    )
    compare(plain, via_operator(op))
    sizes = [len(body) for body in TEXTS.values()]
    expected = sum(-(-size // value) for size in sizes) if option == "chunk_size" else value * len(sizes)
    assert plain.calls == {"M000": expected}


@pytest.mark.parametrize("per_object", [False, True])
def test_map_reduce_over_a_prefix_with_chunks(
    lithops_conn: str, lithops_config: dict[str, Any], texts: str, per_object: bool
) -> None:
    plain = run_plain(
        lithops_config,
        "map_reduce",
        describe_chunk,
        lambda: f"minio://{texts}/texts/",
        reduce_function=described_total,
        obj_chunk_number=2,
        obj_reduce_by_key=per_object,
    )
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=describe_chunk,
        reduce_function=described_total,
        map_iterdata=f"cos://{texts}/texts/",
        chunk_n=2,
        reducer_one_per_object=per_object,
    )
    compare(plain, via_operator(op))
    assert plain.calls == {"M000": 6, "R000": 3 if per_object else 1}


# -- http(s) object URLs ---------------------------------------------------------------


@pytest.mark.parametrize("chunks", [None, 2])
def test_http_object_urls(
    lithops_conn: str, lithops_config: dict[str, Any], http_texts: str, chunks: int | None
) -> None:
    urls = [f"{http_texts}/{name}" for name in sorted(TEXTS)]
    plain = plain_map(lithops_config, describe_chunk, lambda: list(urls), obj_chunk_number=chunks)
    op = PyWrenMapOperator(task_id="t", map_function=describe_chunk, map_iterdata=urls, chunk_n=chunks)
    compare(plain, via_operator(op))
    assert plain.calls == {"M000": 3 * (chunks or 1)}
    # One URL as a bare string.
    plain = plain_map(lithops_config, words, lambda: urls[0])
    op = PyWrenMapOperator(task_id="t", map_function=words, map_iterdata=urls[0])
    compare(plain, via_operator(op))
    assert plain.results == [180]


# -- shapes of plain data ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "make"),
    [
        (hello, lambda: range(3)),
        (hello, lambda: {1, 2}),
        (concat, lambda: [["a", "b"], ["c", "d"]]),
        (pair_sum, lambda: [(1, 1), (2, 2), (3, 3)]),
        (pair_sum, lambda: [{"x": 2, "y": 8}, {"x": 2, "y": 8}]),
        (pair_sum, lambda: (4, 6)),  # a bare tuple: one call, f(4, 6)
        (call_id, lambda: [10, 20, 30]),  # id injected
    ],
)
def test_plain_data_shapes(
    lithops_conn: str, lithops_config: dict[str, Any], function: Any, make: Any
) -> None:
    plain = plain_map(lithops_config, function, make)
    op = PyWrenMapOperator(task_id="t", map_function=function, map_iterdata=make())
    compare(plain, via_operator(op))


def test_generator_is_read_when_the_task_runs(lithops_conn: str, lithops_config: dict[str, Any]) -> None:
    """Plain Lithops makes a generator *one* call, whose input cannot be pickled: it fails.
    The operator reads the generator when the task runs, as the list Lithops would map."""
    plain = plain_map(lithops_config, call_id, lambda: (i * i for i in range(3)))
    assert plain.error is not None and "generator" in plain.error
    as_list = plain_map(lithops_config, call_id, lambda: [i * i for i in range(3)])
    op = PyWrenMapOperator(task_id="t", map_function=call_id, map_iterdata=(i * i for i in range(3)))
    compare(as_list, via_operator(op))


def test_extra_args_positional_and_keyword(lithops_conn: str, lithops_config: dict[str, Any]) -> None:
    plain = plain_map(lithops_config, pair_sum, lambda: [1, 2, 3], extra_args=(10,))
    op = PyWrenMapOperator(task_id="t", map_function=pair_sum, map_iterdata=[1, 2, 3], extra_args=[10])
    compare(plain, via_operator(op))
    plain = plain_map(lithops_config, pair_sum, lambda: [{"x": 1}, {"x": 2}], extra_args={"y": 10})
    op = PyWrenMapOperator(
        task_id="t", map_function=pair_sum, map_iterdata=[{"x": 1}, {"x": 2}], extra_args={"y": 10}
    )
    compare(plain, via_operator(op))
    assert plain.results == [11, 12]


# -- injected parameters end to end ------------------------------------------------------


def test_injected_storage_reads_and_writes(
    lithops_conn: str, lithops_config: dict[str, Any], bucket: str, s3_server: LocalS3Server
) -> None:
    plain = plain_map(
        lithops_config, round_trip, lambda: [{"x": "a", "bucket": bucket}, {"x": "b", "bucket": bucket}]
    )
    op = PyWrenMapOperator(
        task_id="t", map_function=round_trip, map_iterdata=["a", "b"], extra_params={"bucket": bucket}
    )
    compare(plain, via_operator(op))
    assert plain.results == ["a:0", "b:1"]
    body = s3_server.client().get_object(Bucket=bucket, Key="round-trip/1.txt")["Body"].read()
    assert body == b"b:1"
    # call_async: id is 0, storage is there.
    op = PyWrenCallAsyncOperator(task_id="t", func=round_trip, data={"x": "c", "bucket": bucket})
    assert via_operator(op).results == "c:0"


# -- item 2: the seed's iterdata_from_task with map_iterdata=[] ------------------------


def test_iterdata_from_task_with_an_empty_map_iterdata(lithops_conn: str, texts: str) -> None:
    op = PyWrenMapOperator(task_id="t", map_function=call_id, map_iterdata=[], iterdata_from_task="up")
    assert via_operator(op, {"up": [7, 8]}).results == [[7, 0], [8, 1]]
    # An upstream task may return a prefix URL too, as a Lithops input.
    op = PyWrenMapOperator(task_id="t", map_function=words, map_iterdata=None, iterdata_from_task="up")
    assert sorted(via_operator(op, {"up": f"s3://{texts}/texts/"}).results) == [3, 36, 180]


# -- the seed family's DAGs, in shape -------------------------------------------------------


def test_seed_weather_dag_shape(
    lithops_conn: str, lithops_config: dict[str, Any], bucket: str, s3_server: LocalS3Server
) -> None:
    """The successor plugin's meteo DAG: a map over ``'cos://bucket/weather_data'`` (one
    object) with ``chunk_size`` and ``extra_args=[countries, bucket]`` writes one object per
    country and chunk; then one map-reduce per country over ``'cos://bucket/ES/'`` (a prefix)
    with ``extra_args=[country, bucket, plot]``. Unchanged DAG arguments, run here."""
    countries = ["ES", "PT", "IT"]
    records = [
        {"country": ["ES", "PT", "IT", "FR"][i % 4], "city": f"c{i}", "temp": 10 + i % 7, "humi": 50 + i % 5}
        for i in range(400)
    ]
    dataset = "".join(json.dumps(r) + "\n" for r in records).encode()
    s3_server.client().put_object(Bucket=bucket, Key="weather_data", Body=dataset)
    chunk = len(dataset) // 5 + 1

    parse = PyWrenMapOperator(
        task_id="parse_data",
        map_function=parse_weather,
        map_iterdata=f"cos://{bucket}/weather_data",
        chunk_size=chunk,
        extra_args=[countries, bucket],
    )
    parsed = via_operator(parse)
    assert parsed.calls == {"M000": 5}
    plain_parse = plain_map(
        lithops_config,
        parse_weather,
        lambda: f"minio://{bucket}/weather_data",
        obj_chunk_size=chunk,
        extra_args=(countries, bucket),
    )
    compare(plain_parse, parsed)  # (it writes the same objects again: same keys, same bodies)
    per_country = {c: sum(r.get(c, 0) for r in parsed.results) for c in countries}
    assert per_country == {c: sum(1 for r in records if r["country"] == c) for c in countries}

    es = [r["temp"] for r in records if r["country"] == "ES"]
    plot = PyWrenMapReduceOperator(
        task_id="ES_plot_temp",
        pywren_executor_config={"runtime_memory": 512},
        map_function=country_temperatures,
        map_iterdata=f"cos://{bucket}/ES/",
        reduce_function=mean_of_all,
        extra_args=["ES", bucket, "temp"],
        extra_env={"country": "ES", "bucket": bucket, "plot": "temp"},
    )
    planned = via_operator(plot)
    assert planned.results == round(sum(es) / len(es), 3)
    # Plain Lithops on the same prefix: the same calls and the same mean.
    plain = run_plain(
        lithops_config,
        "map_reduce",
        country_temperatures,
        lambda: f"minio://{bucket}/ES/",
        reduce_function=mean_of_all,
        extra_args=("ES", bucket, "temp"),
    )
    compare(plain, planned)
    assert planned.calls == {"M000": 5, "R000": 1}
