"""Call-level retries (``call_retries``): a failed call is resubmitted on its own.

**What Lithops does** (3.8, ``lithops/retries.py``): ``RetryingFunctionExecutor.map(...,
retries=N)`` wraps each future; its ``wait()`` loop sees a call that failed (it raised,
or Lithops' monitor declared it lost) and ``map()``\\ s that call's input again, alone,
on the same executor (a new job id per retried call), while the other calls keep
running. A call gets ``N + 1`` tries; one that fails them all re-raises its last
exception from ``result()``. Only ``map`` has retries there (no ``call_async``, no
``map_reduce``), and the process that called ``wait()`` is held the whole time.

**What this module does**: the same budget without holding a worker slot. The task
waits for its job in the triggerer, so retries go by *rounds*: a round is one job;
when every call of it has ended, the task resumes, submits the inputs of the calls that
failed as the next round (one job for all of them, not one per call: a resume costs a
scheduler round trip and a worker slot for a moment), and defers again, at most
``call_retries`` times per task try. Consequences:

* A round waits for all of its calls before the failures are resubmitted (Lithops
  resubmits each failure at once). ``fail_fast`` applies only to a round with no
  retries left, whose calls are all on their last try.
* Each round is a new executor: each submission here builds its own
  ``FunctionExecutor`` (the localhost runner is a new process), Lithops has no public
  way to submit on an executor id it did not create, and a JobRef per round keeps
  polling, fetching and cleaning unchanged. Keys of different rounds never collide.
* Results are merged in input order: each input's result comes from the last round
  that ran it. Cleanup (``clean_data``) deletes every round's job.

**Where the inputs of failed calls come from**: the operator again (``retry_spec``:
``map_iterdata`` rendered, ``iterdata_from_task`` pulled from XCom), not storage:
Lithops puts the data of calls under 8 KiB (``MAX_DATA_IN_PAYLOAD``) in the invocation
payload only, never in ``aggdata.pickle``, and keeps the call-to-byte-range map in
memory. A fingerprint (SHA-256 of the pickled inputs) recorded with the first round
makes a changed input list (an upstream task re-run, a ``set`` iterdata whose order
changed) a clear error instead of a result attributed to the wrong input. Object
inputs that Lithops expands into a different number of calls (a prefix, chunks) cannot
be mapped back to their inputs: ``chunk_size``/``chunk_n`` are refused with
``call_retries`` at parse time, and a job whose call count differs from its input count
is not retried (its failure says why).

**An Airflow retry** of a task whose calls failed reattaches to the last round (see
:mod:`pywren_deferrable.lineage`) and resubmits only the failed calls, keeping the
finished results; that try then has its own ``call_retries`` budget.

The state that travels between rounds (trigger kwargs, events, the lineage marker) is
:class:`RetryState`: counts, a fingerprint, and per round its JobRef (secret-free) and
the input indexes of its calls as ranges (``"0-9999"``, ``"3,17,250-260"``).
"""

from __future__ import annotations

import hashlib
import pickle
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from airflow.sdk.exceptions import AirflowException

from pywren_deferrable.call_status import CallStatus
from pywren_deferrable.job import JobRef, call_id
from pywren_deferrable.results import ResultLocation, afetch_results, result_locations
from pywren_deferrable.resume import JobResults
from pywren_deferrable.submit import JobSpec
from pywren_deferrable.triggers.job import EVENT_FAILED, EVENT_SUCCESS
from pywren_deferrable.triggers.status import StatusSource

STATE_KEY = "retry"
MAX_LISTED_INPUTS = 20


def check_call_retries(value: Any) -> int:
    """``call_retries`` is a non-negative int (bool is refused: ``True`` is no count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "call_retries must be an int (how many times a failed call is resubmitted), "
            f"got {type(value).__name__}"
        )
    if value < 0:
        raise ValueError(f"call_retries must be >= 0, got {value}")
    return value


def processes_objects(function: Any) -> bool:
    """True when Lithops maps ``function`` over storage objects (it takes ``obj``):
    Lithops then splits the inputs into calls itself (objects under a prefix, chunks)
    and keeps no map from a call back to its input, so a call cannot be resubmitted
    alone (Lithops' own ``RetryingFunctionExecutor`` resubmits the whole input there)."""
    import inspect

    try:
        return "obj" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def check_retryable_map(call_retries: int, function: Any, chunked: bool) -> None:
    """Parse-time refusal of ``call_retries`` where a call's input cannot be known."""
    if not call_retries:
        return
    if chunked:
        raise ValueError(
            "call_retries cannot be combined with chunk_size/chunk_n: Lithops splits objects into "
            "chunks at submit time and keeps no map from a call to its chunk, so a failed call "
            "cannot be resubmitted alone (use Airflow's retries)"
        )
    if processes_objects(function):
        raise ValueError(
            "call_retries: map_function takes obj (it processes storage objects), which Lithops "
            "splits into calls at submit time without keeping a map from a call to its input, so a "
            "failed call cannot be resubmitted alone (use Airflow's retries)"
        )


# -- input indexes as ranges ---------------------------------------------------------
def encode_indices(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (strictly increasing indexes)."""
    parts: list[str] = []
    start = previous = -2
    for index in [*indices, -1]:
        if index == previous + 1:
            previous = index
            continue
        if start >= 0:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = index
    return ",".join(parts)


def decode_indices(text: str) -> tuple[int, ...]:
    """Inverse of :func:`encode_indices`; refuses anything not strictly increasing."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"input indexes must be a non-empty range string, got {text!r:.80}")
    indices: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low < 0 or high < low or (indices and low <= indices[-1]):
            raise ValueError(f"input indexes {text!r:.80} are not increasing ranges")
        indices.extend(range(low, high + 1))
    return tuple(indices)


def fingerprint(inputs: list[Any]) -> str | None:
    """SHA-256 of the pickled inputs (None if they do not pickle: then only their number
    is compared between rounds)."""
    try:
        data = pickle.dumps(inputs, protocol=4)
    except Exception:
        try:
            import cloudpickle

            data = cloudpickle.dumps(inputs, protocol=4)
        except Exception:
            return None
    return hashlib.sha256(data).hexdigest()


def spec_inputs(spec: JobSpec) -> list[Any]:
    """The input of each call of ``spec`` (one for a ``call_async``)."""
    if spec.call_type == "call_async":
        return [spec.iterdata]
    return list(spec.iterdata)


def subset_spec(spec: JobSpec, indices: Sequence[int]) -> JobSpec:
    """``spec`` running only the inputs at ``indices`` (a map; a call_async's one call)."""
    if spec.call_type == "call_async":
        return spec
    if spec.call_type != "map":
        raise ValueError(f"a retry round is a map or a call_async, not a {spec.call_type}")
    inputs = list(spec.iterdata)
    return replace(spec, iterdata=[inputs[i] for i in indices])


# -- the state -----------------------------------------------------------------------
@dataclass(frozen=True)
class Round:
    """One submission: its job, which of the JobRef's jobs runs the inputs, and the
    input index of each of that job's calls, in call order."""

    job: JobRef
    job_id: str
    indices: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job.to_dict(), "job_id": self.job_id, "indices": encode_indices(self.indices)}

    @classmethod
    def from_dict(cls, data: Any) -> Round:
        if not isinstance(data, dict):
            raise TypeError("a retry round must be a dict")
        job = JobRef.from_dict(data["job"])
        if data["job_id"] not in job.job_ids:
            raise ValueError(f"round job {data['job_id']!r} is not one of {job.job_ids}")
        return cls(job=job, job_id=str(data["job_id"]), indices=decode_indices(data["indices"]))


@dataclass
class RetryState:
    """Where the rounds of one task instance stand.

    :param call_retries: rounds allowed after the first round of this task try.
    :param inputs: the number of inputs (calls of the first round).
    :param fingerprint: see :func:`fingerprint`.
    :param rounds: every round so far, first to last (earlier task tries included).
    :param try_start: the index of the first round this task try may count against
        ``call_retries`` (an Airflow retry starts a fresh budget).
    """

    call_retries: int
    inputs: int
    fingerprint: str | None
    rounds: list[Round] = field(default_factory=list)
    try_start: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_retries": self.call_retries,
            "inputs": self.inputs,
            "fingerprint": self.fingerprint,
            "rounds": [r.to_dict() for r in self.rounds],
            "try_start": self.try_start,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RetryState:
        if not isinstance(data, dict):
            raise TypeError("the retry state must be a dict")
        state = cls(
            call_retries=check_call_retries(data["call_retries"]),
            inputs=int(data["inputs"]),
            fingerprint=data.get("fingerprint"),
            rounds=[Round.from_dict(r) for r in data["rounds"]],
            try_start=int(data.get("try_start") or 0),
        )
        if not state.rounds or state.rounds[0].indices != tuple(range(state.inputs)):
            raise ValueError("the first retry round must run every input")
        for earlier, later in zip(state.rounds, state.rounds[1:], strict=False):
            if not set(later.indices) <= set(earlier.indices):
                raise ValueError("a retry round runs inputs its previous round did not")
            if later.job.total_calls[later.job_id] != len(later.indices):
                raise ValueError("a retry round's job has another number of calls than inputs")
        return state

    @property
    def last(self) -> Round:
        return self.rounds[-1]

    def retries_left(self) -> int:
        """Rounds this task try may still submit."""
        return self.call_retries - (len(self.rounds) - 1 - self.try_start)

    def tries(self, index: int) -> int:
        """How many times input ``index`` ran (every round that had it, all task tries)."""
        return sum(1 for r in self.rounds if index in r.indices)

    def why_not_retried(self) -> str | None:
        """Why the failed calls cannot be resubmitted alone, if they cannot."""
        first = self.rounds[0]
        made = first.job.total_calls[first.job_id]
        if made != self.inputs:
            return (
                f"Lithops made {made} calls of the {self.inputs} inputs (objects under a prefix, "
                "or chunks of objects), so a failed call's input is not known"
            )
        return None

    def final_calls(self) -> list[tuple[Round, list[int], list[int]]]:
        """Per round, the calls whose result is final (their input ran in no later
        round): ``(round, call positions, input indexes)``."""
        out = []
        for number, rnd in enumerate(self.rounds):
            later = set(self.rounds[number + 1].indices) if number + 1 < len(self.rounds) else set()
            positions = [p for p, i in enumerate(rnd.indices) if i not in later]
            out.append((rnd, positions, [rnd.indices[p] for p in positions]))
        return out

    def earlier_jobs(self) -> list[dict[str, Any]]:
        """Every round's JobRef but the last, as dicts (``also_clean``)."""
        return [r.job.to_dict() for r in self.rounds[:-1]]

    def all_jobs(self) -> list[dict[str, Any]]:
        return [r.job.to_dict() for r in self.rounds]


def first_state(call_retries: int, spec: JobSpec, job: JobRef) -> dict[str, Any]:
    """The state of a first round (kept even with ``call_retries=0``: an Airflow retry
    then resubmits only the failed calls)."""
    inputs = spec_inputs(spec)
    state = RetryState(
        call_retries=call_retries,
        inputs=len(inputs),
        fingerprint=fingerprint(inputs),
        rounds=[Round(job=job, job_id=job.job_ids[0], indices=tuple(range(len(inputs))))],
    )
    return {STATE_KEY: state.to_dict()}


def state_of(resume_state: dict[str, Any]) -> RetryState | None:
    """The retry state in a resume state, if any."""
    data = resume_state.get(STATE_KEY)
    if data is None:
        return None
    try:
        return RetryState.from_dict(data)
    except (TypeError, ValueError, KeyError) as err:
        raise AirflowException(f"call_retries: unreadable retry state ({err})") from None


def earlier_jobs(resume_state: dict[str, Any]) -> list[JobRef]:
    """The jobs a task submitted before the one it waits for: its earlier retry rounds and
    the stages in ``also_clean`` (for ``clean_data`` when the task is killed). Whatever
    cannot be read is skipped: this only ever narrows what is deleted."""
    found: dict[str, JobRef] = {}
    raw = list(resume_state.get("also_clean") or [])
    state = resume_state.get(STATE_KEY)
    if isinstance(state, dict) and isinstance(state.get("rounds"), list):
        raw += [r.get("job") for r in state["rounds"][:-1] if isinstance(r, dict)]
    for data in raw:
        try:
            job = JobRef.from_dict(data)
        except (TypeError, ValueError, KeyError):
            continue
        found.setdefault(job.executor_id, job)
    return list(found.values())


def round_fail_fast(fail_fast: bool, resume_state: dict[str, Any]) -> bool:
    """A round with retries left waits for all its calls: their failures go together."""
    state = resume_state.get(STATE_KEY)
    if not isinstance(state, dict):
        return fail_fast
    return fail_fast and state_of(resume_state).retries_left() <= 0  # type: ignore[union-attr]


def resumes_failures(resume_state: dict[str, Any]) -> bool:
    """Whether an Airflow retry can resubmit only the failed calls of this recorded job."""
    try:
        state = state_of(resume_state)
    except AirflowException:
        return False
    return state is not None and state.why_not_retried() is None


def on_task_retry(resume_state: dict[str, Any], call_retries: int) -> dict[str, Any]:
    """The recorded state, for a new task try reattaching to its last round: the rounds
    of earlier tries are kept (their results are reused) and this try's budget starts
    after them, so the failures of the reattached round are resubmitted."""
    state = state_of(resume_state)
    if state is None:
        return resume_state
    state.call_retries = call_retries
    state.try_start = len(state.rounds)
    return {**resume_state, STATE_KEY: state.to_dict()}


# -- results -------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundResults:
    """The results of every input, each from the last round that ran it."""

    state: RetryState

    def only_round(self) -> Round | None:
        """The round, when one job ran every input in order (no call was retried): its
        results are then exactly Lithops' own, futures returned by functions included."""
        calls = [(rnd, list(p), list(i)) for rnd, p, i in self.state.final_calls() if p]
        every = list(range(self.state.inputs))
        if len(calls) == 1 and calls[0][1] == every and calls[0][2] == every:
            return calls[0][0]
        return None

    async def results(self, source: StatusSource, seen: list[CallStatus] | None = None) -> list[Any]:
        only = self.only_round()
        if only is not None:
            return await afetch_results(source, only.job, job_id=only.job_id, seen=seen)
        merged: list[Any] = [None] * self.state.inputs
        for rnd, positions, indices in self.state.final_calls():
            if positions:
                values = await afetch_results(
                    source, rnd.job, job_id=rnd.job_id, positions=positions, seen=seen
                )
                for index, value in zip(indices, values, strict=True):
                    merged[index] = value
        return merged

    async def alocations(self, source: StatusSource, event: dict[str, Any]) -> list[ResultLocation]:
        only = self.only_round()
        if only is not None and only.job_id == only.job.result_job_id:
            return await JobResults(only.job).alocations(source, event)
        return self.locations()

    def locations(self) -> list[ResultLocation]:
        merged: list[ResultLocation | None] = [None] * self.state.inputs
        for rnd, positions, indices in self.state.final_calls():
            found = result_locations(rnd.job, job_id=rnd.job_id, positions=positions)
            for index, location in zip(indices, found, strict=True):
                merged[index] = location
        return [loc for loc in merged if loc is not None]

    def reducer_rounds(self) -> list[dict[str, Any]]:
        """The rounds as :func:`pywren_deferrable.reduce_stage.reduce_map_rounds` reads them."""
        return [
            {
                "job": rnd.job.to_dict(),
                "job_id": rnd.job_id,
                "calls": [list(c) for c in zip(indices, positions, strict=True)],
            }
            for rnd, positions, indices in self.state.final_calls()
            if positions
        ]


# -- the resume ----------------------------------------------------------------------
class RetryingOperator(Protocol):
    """What :func:`resume` needs of an operator (see operators/base.py)."""

    @property
    def log(self) -> Any: ...

    def resume_state(self, event: Any) -> dict[str, Any]: ...
    def retry_spec(self, context: Any, config: dict[str, Any]) -> JobSpec: ...
    def submit_spec(self, context: Any, spec: JobSpec, deadline: float | None) -> JobRef: ...
    def remember_job(
        self, context: Any, config: dict[str, Any], job: JobRef, state: dict[str, Any]
    ) -> None: ...
    def wait_for_job(self, context: Any, job: JobRef, *, deadline: float | None, **state: Any) -> Any: ...
    def finish_rounds(self, context: Any, event: Any, state: RetryState) -> Any: ...
    def fail_rounds(self, context: Any, event: Any, state: RetryState) -> Any: ...
    def _hook(self) -> Any: ...


def failed_positions(event: dict[str, Any], job_id: str) -> list[int]:
    """The positions of ``job_id``'s calls the trigger reported failed."""
    calls = (event.get("failed_calls") or {}).get(job_id) or []
    return sorted(int(c) for c in calls)


def resume(op: RetryingOperator, context: Any, event: Any) -> Any:
    """A round ended: resubmit its failed calls, or finish (results or failure)."""
    resume_state = op.resume_state(event)
    state = state_of(resume_state)
    assert state is not None
    status = event.get("status") if isinstance(event, dict) else None
    if status == EVENT_FAILED:
        failed = failed_positions(event, state.last.job_id)
        if failed and state.retries_left() > 0 and state.why_not_retried() is None:
            return resubmit(op, context, resume_state, state, failed)
        return op.fail_rounds(context, event, state)
    if status == EVENT_SUCCESS:
        return op.finish_rounds(context, event, state)
    return op.fail_rounds(context, event, state)  # timeout, error, or unexpected


def inputs_changed(state: RetryState, spec: JobSpec) -> str | None:
    """Why the inputs of ``spec`` are not those the rounds of ``state`` ran, if they are not."""
    inputs = spec_inputs(spec)
    now = fingerprint(inputs)
    if len(inputs) != state.inputs:
        return f"the inputs changed since the first round ({state.inputs} inputs then, {len(inputs)} now)"
    if state.fingerprint and now and now != state.fingerprint:
        return f"the inputs changed since the first round (the same {state.inputs} inputs, other values)"
    return None


def task_will_retry(context: Any) -> bool:
    """True when Airflow will retry this task if it fails now (try_number <= max_tries):
    a failed round's objects are then kept for that retry to reuse, even with clean_data."""
    ti = context.get("ti") if hasattr(context, "get") else None
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    if isinstance(try_number, bool) or isinstance(max_tries, bool):
        return False
    return isinstance(try_number, int) and isinstance(max_tries, int) and try_number <= max_tries


def resubmit(
    op: RetryingOperator, context: Any, resume_state: dict[str, Any], state: RetryState, failed: list[int]
) -> Any:
    """Submit the inputs of the ``failed`` calls of the last round as the next round."""
    config = op._hook().get_config()
    spec = op.retry_spec(context, config)
    changed = inputs_changed(state, spec)
    if changed:
        raise AirflowException(
            f"call_retries: {changed}: a retried call would get another input. Give the task a stable "
            "input list (a list, not a set; an upstream task that is not re-run)"
        )
    indices = [state.last.indices[p] for p in failed]
    op.log.warning(
        "call_retries: resubmitting %d failed call(s) of %d (inputs %s) for try %d; %d retry round(s) "
        "left after this one",
        len(indices),
        state.inputs,
        encode_indices(indices)[:200],
        state.tries(indices[0]) + 1,
        state.retries_left() - 1,
    )
    deadline = resume_state.get("deadline")
    job = op.submit_spec(context, subset_spec(spec, indices), deadline)
    state.rounds.append(Round(job=job, job_id=job.job_ids[0], indices=tuple(indices)))
    new_state = {k: v for k, v in resume_state.items() if k != "deadline"}
    new_state[STATE_KEY] = state.to_dict()
    op.remember_job(context, config, job, new_state)
    return op.wait_for_job(context, job, deadline=deadline, **new_state)


def short_repr(value: Any) -> str:
    """A repr of a call's input short enough for an error line."""
    shortener = reprlib.Repr()
    shortener.maxstring, shortener.maxother, shortener.maxlist, shortener.maxdict = 60, 60, 4, 4
    return shortener.repr(value)


def failure_header(event: dict[str, Any], state: RetryState, inputs: Sequence[Any] | None = None) -> str:
    """Which inputs still failed, after how many tries, with their last call.

    :param inputs: the task's inputs in order, when known: each failed one is shown
        (``input #3 = 'cos://b/x.csv'``), so a user finds it without counting.
    """
    failed = failed_positions(event, state.last.job_id)
    if not failed:
        return ""
    parts = []
    for position in failed[:MAX_LISTED_INPUTS]:
        index = state.last.indices[position]
        tries = state.tries(index)
        shown = f" = {short_repr(inputs[index])}" if inputs is not None and index < len(inputs) else ""
        parts.append(
            f"input #{index}{shown} failed {tries} {'try' if tries == 1 else 'tries'} "
            f"(last: call {state.last.job_id}/{call_id(position)} of executor {state.last.job.executor_id})"
        )
    more = f"; and {len(failed) - MAX_LISTED_INPUTS} more" if len(failed) > MAX_LISTED_INPUTS else ""
    why = state.why_not_retried()
    budget = f"call_retries={state.call_retries}" + (f", not retried: {why}" if why else "")
    return (
        f"{len(failed)} input(s) failed on every try ({budget}; #: index in the inputs): "
        + "; ".join(parts)
        + more
    )
