"""Functions the tests run on Lithops."""

from __future__ import annotations

import time


def add(x, y=0):
    return x + y


def fail_on(x, bad=3):
    if x == bad:
        raise ValueError(f"boom on {x}")
    return x


def sleep_then(x, seconds=1.0):
    time.sleep(seconds)
    return x


def big_result(x, size=20000):
    """A result larger than Lithops' 8 KiB inline limit: it goes to output.pickle."""
    return str(x) * size


def big_result_after_a_moment(x, size=20000, delay=2.0):
    """big_result, returned after ``delay`` s. Lithops' handler writes the call's ``.init``
    right after forking the JobRunner, on a pooled TLS connection the JobRunner inherited;
    a JobRunner that uploads its result at that moment can read the handler's response and
    lose its upload (docs/failure-modes.md). Returning later keeps the two apart where a
    test is about the storage path, not that Lithops race."""
    import time

    time.sleep(delay)
    return str(x) * size


def nothing(x):
    return None


def read_env(x, name="PYWREN_TEST_VAR"):
    import os

    return f"{x}:{os.environ.get(name)}"


def positional(a, b, c):
    return [a, b, c]


def count_lines(obj):
    """One call per storage object or chunk: its number of lines."""
    return obj.data_stream.read().decode().count("\n")


def total(results):
    return sum(results)


def flaky(x, bad=3, failures=1, marker_dir=""):
    """Returns ``x``, except that its first ``failures`` runs with ``x == bad`` raise.

    Every run leaves a file ``run-<x>-<n>`` in ``marker_dir`` (the calls of the localhost
    backend share this machine's disk), so a test can count how often each input ran.
    """
    import os

    runs = sum(1 for name in os.listdir(marker_dir) if name.startswith(f"run-{x}-"))
    with open(os.path.join(marker_dir, f"run-{x}-{runs}"), "x"):
        pass
    if x == bad and runs < failures:
        raise ValueError(f"run {runs + 1} of input {x} fails")
    return x


# -- Lithops semantics (tests/integration/test_lithops_semantics.py) ---------------------


def call_id(x, id):
    """Lithops injects ``id``: the call's number in its job."""
    return [x, id]


def describe_chunk(obj):
    """What the partitioner gave this call: the object, the chunk, the lines read."""
    data = obj.data_stream.read()
    where = getattr(obj, "key", None) or getattr(obj, "url", None) or getattr(obj, "path", None)
    return [where, obj.part, obj.total_parts, data.count(b"\n"), len(data.split())]


def words(obj):
    return len(obj.data_stream.read().split())


def described_total(results):
    """A reducer over describe_chunk results: lines and words of its objects."""
    return [sum(r[3] for r in results), sum(r[4] for r in results)]


def round_trip(x, id, storage, bucket):
    """Writes an object with the injected Lithops Storage client and reads it back."""
    key = f"round-trip/{id}.txt"
    storage.put_object(bucket, key, f"{x}:{id}".encode())
    return storage.get_object(bucket, key).decode()


def hello(x):
    return "Hello World!"


def concat(lst):
    return " ".join(lst)


def pair_sum(x, y):
    return x + y


# -- the seed family's meteorological DAG, in shape (its code is not copied) ------------


def parse_weather(obj, countries, bucket, storage, id):
    """A chunk of a JSON-lines dataset, grouped by country: one object per country and chunk.

    Like the seed example's ``parse_data`` (a map over ``'cos://bucket/weather_data'`` with
    ``chunk_size`` and ``extra_args=[countries, bucket]``), writing through the injected
    storage client."""
    import json

    grouped: dict[str, list[str]] = {}
    for line in obj.data_stream.read().decode().splitlines():
        if line.strip():
            record = json.loads(line)
            if record["country"] in countries:
                grouped.setdefault(record["country"], []).append(line)
    for country, lines in grouped.items():
        storage.put_object(bucket, f"{country}/part-{id:05d}.json", ("\n".join(lines) + "\n").encode())
    return {country: len(lines) for country, lines in grouped.items()}


def country_temperatures(obj, country, bucket, plot):
    """A per-country map (the seed's ``get_plot_data``): the values of one field."""
    import json

    return [json.loads(line)[plot] for line in obj.data_stream.read().decode().splitlines() if line]


def mean_of_all(results):
    values = [v for part in results for v in part]
    return round(sum(values) / len(values), 3)


def publish_to_queue(x, queue, rabbitmq):
    """Lithops injects ``rabbitmq``: a pika connection to the config's ``amqp_url``."""
    channel = rabbitmq.channel()
    channel.queue_declare(queue=queue)
    channel.basic_publish(exchange="", routing_key=queue, body=str(x * 10).encode())
    return x
