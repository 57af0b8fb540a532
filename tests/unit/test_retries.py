"""``call_retries``: parse-time checks, the round state and its arithmetic (no network).
The rounds themselves run against real Lithops jobs in tests/integration/test_call_retries.py."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator
from pywren_deferrable.call_status import CallStatus
from pywren_deferrable.decorators import pywren_task
from pywren_deferrable.job import JobRef, StorageLocation
from pywren_deferrable.retries import (
    STATE_KEY,
    RetryState,
    Round,
    decode_indices,
    earlier_jobs,
    encode_indices,
    failure_header,
    fingerprint,
    on_task_retry,
    resumes_failures,
    round_fail_fast,
    task_will_retry,
)


def add(x, y=0):
    return x + y


def total(results):
    return sum(results)


def count(obj):
    return obj


# -- parse time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, r"call_retries must be >= 0, got -1"),
        ("2", TypeError, r"call_retries must be an int .* got str"),
        (1.5, TypeError, r"call_retries must be an int .* got float"),
        (True, TypeError, r"call_retries must be an int .* got bool"),
        (None, TypeError, r"call_retries must be an int .* got NoneType"),
    ],
)
def test_bad_call_retries_is_refused_on_every_operator(value: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=[1], call_retries=value)
    with pytest.raises(error, match=match):
        PyWrenCallAsyncOperator(task_id="t", func=add, data={"x": 1}, call_retries=value)
    with pytest.raises(error, match=match):
        PyWrenMapReduceOperator(
            task_id="t", map_function=add, reduce_function=total, map_iterdata=[1], call_retries=value
        )


def test_call_retries_reaches_the_taskflow_operators() -> None:
    from airflow.sdk import DAG

    with DAG("d", schedule=None):
        task = pywren_task.map(call_retries=2)(add)([1, 2])
        assert task.operator.call_retries == 2
        with pytest.raises(ValueError, match="call_retries must be >= 0"):
            pywren_task.call_async(call_retries=-1)(add)(1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"map_iterdata": ["s3://b/p/"], "map_function": count, "chunk_size": 100}, "chunk_size/chunk_n"),
        ({"map_iterdata": ["s3://b/p/"], "map_function": count, "chunk_n": 2}, "chunk_size/chunk_n"),
        ({"map_iterdata": ["s3://b/p/"], "map_function": count}, "map_function takes obj"),
        ({"wait_for_result": False}, "call_retries needs wait_for_result=True"),
    ],
)
def test_call_retries_is_refused_where_a_call_cannot_be_retried_alone(
    kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"task_id": "t", "map_function": add, "map_iterdata": [1], "call_retries": 1}
    with pytest.raises(ValueError, match=match):
        PyWrenMapOperator(**{**args, **kwargs})
    PyWrenMapOperator(**{**args, **kwargs, "call_retries": 0})  # fine without retries


def test_call_retries_with_reducer_one_per_object_is_refused() -> None:
    with pytest.raises(ValueError, match="reducer_one_per_object cannot be combined with call_retries"):
        PyWrenMapReduceOperator(
            task_id="t",
            map_function=add,
            reduce_function=total,
            map_iterdata=[1],
            reducer_one_per_object=True,
            call_retries=1,
        )


# -- the state -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("indices", "text"),
    [([0], "0"), ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), (list(range(10_000)), "0-9999"), ([3, 17], "3,17")],
)
def test_indices_travel_as_ranges(indices: list[int], text: str) -> None:
    assert encode_indices(indices) == text
    assert decode_indices(text) == tuple(indices)


@pytest.mark.parametrize("text", ["", "3,1", "2-1", "1,1", "-1", "a", "0-2,2"])
def test_bad_index_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_indices(text)


def job(executor: str, calls: int, job_ids: tuple[str, ...] = ("M000",)) -> JobRef:
    return JobRef(
        executor_id=executor,
        job_ids=job_ids,
        total_calls=dict.fromkeys(job_ids, calls),
        storage=StorageLocation(kind="s3", bucket="bucket", backend="aws_s3"),
        call_type="map",
        engine_version="3.8.0",
    )


def three_rounds() -> RetryState:
    return RetryState(
        call_retries=2,
        inputs=10,
        fingerprint=fingerprint(list(range(10))),
        rounds=[
            Round(job("aaaaaa-0", 10), "M000", tuple(range(10))),
            Round(job("bbbbbb-0", 3), "M000", (2, 3, 7)),
            Round(job("cccccc-0", 1), "M000", (3,)),
        ],
    )


def test_final_calls_take_each_input_from_its_last_round() -> None:
    finals = {
        rnd.job.executor_id: (positions, indices) for rnd, positions, indices in three_rounds().final_calls()
    }
    assert finals == {
        "aaaaaa-0": ([0, 1, 4, 5, 6, 8, 9], [0, 1, 4, 5, 6, 8, 9]),
        "bbbbbb-0": ([0, 2], [2, 7]),
        "cccccc-0": ([0], [3]),
    }


def test_tries_budget_and_fail_fast() -> None:
    state = three_rounds()
    assert [state.tries(i) for i in (0, 2, 3)] == [1, 2, 3]
    assert state.retries_left() == 0
    as_resume_state = {STATE_KEY: state.to_dict()}
    assert round_fail_fast(True, as_resume_state) is True  # last try: fail at once
    first_only = RetryState(2, 10, None, state.rounds[:1])
    assert round_fail_fast(True, {STATE_KEY: first_only.to_dict()}) is False
    assert round_fail_fast(True, {}) is True and round_fail_fast(False, {}) is False
    # An Airflow retry reattaching to the last round gets a fresh budget after it.
    retried = RetryState.from_dict(on_task_retry(as_resume_state, 0)[STATE_KEY])
    assert (retried.try_start, retried.retries_left()) == (3, 1)


def test_state_round_trips_small_and_secret_free() -> None:
    state = three_rounds()
    data = json.loads(json.dumps(state.to_dict()))
    assert RetryState.from_dict(data) == state
    assert len(json.dumps(data)) < 2500
    assert "secret" not in json.dumps(data).lower()


@pytest.mark.parametrize(
    "broken",
    [
        lambda d: d.update(rounds=[]),
        lambda d: d["rounds"][0].update(indices="1-9"),  # the first round runs every input
        lambda d: d["rounds"][2].update(indices="4"),  # not a failure of the round before
        lambda d: d["rounds"][1].update(job_id="R000"),
        lambda d: d["rounds"][1].update(indices="2-3"),  # its job has 3 calls
        lambda d: d.update(call_retries=-1),
    ],
)
def test_a_broken_state_is_refused(broken: Any) -> None:
    data = three_rounds().to_dict()
    broken(data)
    with pytest.raises((ValueError, TypeError, KeyError)):
        RetryState.from_dict(data)


def test_failure_header_names_inputs_and_tries() -> None:
    state = three_rounds()
    event = {"status": "failed", "failed_calls": {"M000": ["00000"]}}
    assert failure_header(event, state) == (
        "1 input(s) failed on every try (call_retries=2; #: index in the inputs): input #3 failed 3 tries "
        "(last: call M000/00000 of executor cccccc-0)"
    )
    inputs = ["a", "b", "c", "cos://bucket/" + "x" * 100]
    assert "input #3 = 'cos://bucket/xxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx' failed 3 tries" in (
        failure_header(event, state, inputs)
    )


def test_a_job_lithops_split_differently_is_not_resumable() -> None:
    split = RetryState(1, 2, None, [Round(job("aaaaaa-0", 5), "M000", (0, 1))])
    assert split.why_not_retried() and "made 5 calls of the 2 inputs" in str(split.why_not_retried())
    assert not resumes_failures({STATE_KEY: split.to_dict()})
    assert resumes_failures({STATE_KEY: three_rounds().to_dict()})
    assert not resumes_failures({STATE_KEY: {"rounds": "junk"}})
    assert not resumes_failures({})
    with pytest.raises(AirflowException, match="unreadable retry state"):
        round_fail_fast(True, {STATE_KEY: {"rounds": "junk"}})


class TI:
    def __init__(self, try_number: Any, max_tries: Any) -> None:
        self.try_number, self.max_tries = try_number, max_tries


@pytest.mark.parametrize(
    ("try_number", "max_tries", "expected"),
    [(1, 1, True), (2, 1, False), (1, 0, False), (None, 1, False), (True, 1, False), (3, 5, True)],
)
def test_task_will_retry(try_number: Any, max_tries: Any, expected: bool) -> None:
    assert task_will_retry({"ti": TI(try_number, max_tries)}) is expected
    assert task_will_retry({}) is False


def test_earlier_jobs_are_the_rounds_before_and_the_stages_to_clean() -> None:
    state = three_rounds()
    resume_state = {STATE_KEY: state.to_dict(), "also_clean": [job("dddddd-0", 2).to_dict(), {"junk": 1}]}
    assert [j.executor_id for j in earlier_jobs(resume_state)] == ["dddddd-0", "aaaaaa-0", "bbbbbb-0"]
    assert earlier_jobs({}) == [] and earlier_jobs({STATE_KEY: {"rounds": "junk"}}) == []


def test_the_usage_line_of_rounds_counts_wall_time_from_the_first_round_of_this_try() -> None:
    """Not from the last round's submission: the task waited for every round."""
    state = three_rounds()
    state.rounds = [
        replace(r, job=replace(r.job, submitted_at=100.0 + 50 * i)) for i, r in enumerate(state.rounds)
    ]
    op = PyWrenMapOperator(task_id="t", map_function=add, map_iterdata=list(range(10)), runtime_memory=None)
    ends = [CallStatus("00000", False, None, None, b"", False, worker_start=205.0, worker_end=210.0)]
    line = op.rounds_usage_summary(state, state.rounds[-1].job, {}, ends)
    assert line == "Job cccccc-0: 1 calls, 110.0s wall, 5.0 call-seconds (3 rounds)"
    state.try_start = 2  # an Airflow retry: this try ran the last round only
    line = op.rounds_usage_summary(state, state.rounds[-1].job, {}, ends)
    assert line == "Job cccccc-0: 1 calls, 10.0s wall, 5.0 call-seconds"
    state.try_start = 3  # an Airflow retry that reattached to the last round's job
    line = op.rounds_usage_summary(state, state.rounds[-1].job, {}, ends)
    assert line == "Job cccccc-0: 1 calls, 10.0s wall, 5.0 call-seconds"
