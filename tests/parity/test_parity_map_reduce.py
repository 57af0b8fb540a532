"""Lithops' ``tests/test_map_reduce.py`` (3.8), restated as PyWrenMapReduceOperator tasks.

Lithops' data set is five word lists it downloads from a public bucket; here five word
lists of the same kind (one word per line, a few hundred KiB to 1.3 MiB, so that the
chunk sizes of the tests split them) are generated, uploaded under the same prefix, and
served over HTTP on 127.0.0.1 for the URL case. ``len(futures)`` of a Lithops test is
the number of calls of the task's jobs, maps and reducers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_files import serve_files
from lithops.tests.functions import (
    my_map_function_obj,
    my_map_function_url,
    my_reduce_function,
    simple_map_function,
    simple_reduce_function,
)
from parity_helpers import calls_of, run_task

from pywren_deferrable import PyWrenMapReduceOperator
from pywren_deferrable.embedded import LocalS3Server

pytestmark = pytest.mark.integration

DATASET_PREFIX = "__lithops.test/dataset"
# Words per file: the sizes of Lithops' vocab.{enron,kos,nips,nytimes,pubmed}.txt, scaled.
WORDS_PER_FILE = {
    "vocab.enron.txt": 28_000,
    "vocab.kos.txt": 6_900,
    "vocab.nips.txt": 12_400,
    "vocab.nytimes.txt": 102_000,
    "vocab.pubmed.txt": 141_000,
}


def word_lists() -> dict[str, bytes]:
    """Deterministic word lists, one word per line, each ending with a newline."""
    rng = random.Random(13)
    letters = "abcdefghijklmnopqrstuvwxyz"
    files = {}
    for name, count in WORDS_PER_FILE.items():
        words = ("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(count))
        files[name] = ("\n".join(words) + "\n").encode()
    return files


@pytest.fixture(scope="module")
def dataset() -> dict[str, bytes]:
    return word_lists()


@pytest.fixture
def data(s3_server: LocalS3Server, bucket: str, dataset: dict[str, bytes]) -> tuple[str, int]:
    """The data set under DATASET_PREFIX of the test's bucket; and ``words_in_files``."""
    client = s3_server.client()
    for name, body in dataset.items():
        client.put_object(Bucket=bucket, Key=f"{DATASET_PREFIX}/{name}", Body=body)
    return bucket, sum(len(body.split()) for body in dataset.values())


@pytest.fixture
def urls(tmp_path: Path, dataset: dict[str, bytes]) -> Iterator[list[str]]:
    with serve_files(tmp_path, dataset) as base:
        yield [f"{base}/{name}" for name in WORDS_PER_FILE]


def prefix_of(bucket: str) -> str:
    # The Lithops test writes ``storage_backend + '://'``; ``cos://`` means the Connection's storage.
    return f"cos://{bucket}/{DATASET_PREFIX}/"


def map_reduce(**kwargs: object) -> PyWrenMapReduceOperator:
    return PyWrenMapReduceOperator(
        task_id="t", map_function=my_map_function_obj, reduce_function=my_reduce_function, **kwargs
    )


def test_simple_map_reduce(lithops_conn: str) -> None:
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=simple_map_function,
        map_iterdata=[(1, 1), (2, 2), (3, 3), (4, 4)],
        reduce_function=simple_reduce_function,
    )
    assert run_task(op) == 20


def test_obj_bucket(lithops_conn: str, data: tuple[str, int]) -> None:
    bucket, words_in_files = data
    assert run_task(map_reduce(map_iterdata=prefix_of(bucket))) == words_in_files


def test_obj_bucket_reduce_by_key(lithops_conn: str, data: tuple[str, int]) -> None:
    bucket, words_in_files = data
    result = run_task(map_reduce(map_iterdata=prefix_of(bucket), reducer_one_per_object=True))
    assert sum(result) == words_in_files


def test_obj_key(lithops_conn: str, data: tuple[str, int]) -> None:
    bucket, words_in_files = data
    iterdata = [f"cos://{bucket}/{DATASET_PREFIX}/{name}" for name in sorted(WORDS_PER_FILE)]
    assert run_task(map_reduce(map_iterdata=iterdata)) == words_in_files


def test_obj_key_reduce_by_key(lithops_conn: str, data: tuple[str, int]) -> None:
    bucket, words_in_files = data
    iterdata = [f"cos://{bucket}/{DATASET_PREFIX}/{name}" for name in sorted(WORDS_PER_FILE)]
    result = run_task(map_reduce(map_iterdata=iterdata, reducer_one_per_object=True))
    assert sum(result) == words_in_files


def test_url_processing(lithops_conn: str, urls: list[str], dataset: dict[str, bytes]) -> None:
    words_in_files = sum(len(body.split()) for body in dataset.values())
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=my_map_function_url,  # (id, obj): the URL binds to obj, id is injected
        map_iterdata=urls,
        reduce_function=my_reduce_function,
        chunk_n=2,
    )
    assert run_task(op) == words_in_files


def test_bucket_chunk_size(lithops_conn: str, data: tuple[str, int], dataset: dict[str, bytes]) -> None:
    bucket, words_in_files = data
    obj_chunk_size = 1 * 800**2
    op = map_reduce(map_iterdata=prefix_of(bucket), chunk_size=obj_chunk_size)
    assert run_task(op) == words_in_files
    activations = sum(math.ceil(len(body) / obj_chunk_size) for body in dataset.values())
    assert calls_of(op) == activations + 1  # +1 due to the reduce function


def test_bucket_chunk_number(lithops_conn: str, data: tuple[str, int]) -> None:
    bucket, words_in_files = data
    op = map_reduce(map_iterdata=prefix_of(bucket), chunk_n=2)
    assert run_task(op) == words_in_files
    assert calls_of(op) == len(WORDS_PER_FILE) * 2 + 1


def test_bucket_chunk_size_one_reducer_per_object(
    lithops_conn: str, data: tuple[str, int], dataset: dict[str, bytes]
) -> None:
    bucket, words_in_files = data
    obj_chunk_size = 1 * 1024**2
    op = map_reduce(map_iterdata=prefix_of(bucket), chunk_size=obj_chunk_size, reducer_one_per_object=True)
    assert sum(run_task(op)) == words_in_files
    activations = sum(math.ceil(len(body) / obj_chunk_size) for body in dataset.values())
    # + len(TEST_FILES_URLS) due to map_reduce activation per object
    assert calls_of(op) == activations + len(WORDS_PER_FILE)


def test_bucket_chunk_number_one_reducer_per_object(lithops_conn: str, data: tuple[str, int]) -> None:
    bucket, words_in_files = data
    op = map_reduce(map_iterdata=prefix_of(bucket), chunk_n=2, reducer_one_per_object=True)
    assert sum(run_task(op)) == words_in_files
    assert calls_of(op) == len(WORDS_PER_FILE) * 2 + len(WORDS_PER_FILE)
