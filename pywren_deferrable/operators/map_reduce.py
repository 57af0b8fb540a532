"""PyWrenMapReduceOperator: a map job, then a reduce over its results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pywren_deferrable.iterdata import check_lithops_binding
from pywren_deferrable.job import JobRef
from pywren_deferrable.lineage import task_lineage
from pywren_deferrable.operators.map import PyWrenMapOperator
from pywren_deferrable.operators.validation import check_optional_positive_int, check_payload_function
from pywren_deferrable.reduce_stage import reduce_map_job, reduce_map_rounds
from pywren_deferrable.resume import job_from_event
from pywren_deferrable.retries import STATE_KEY as RETRY_STATE_KEY
from pywren_deferrable.retries import RetryState, RoundResults
from pywren_deferrable.retries import resume as resume_round
from pywren_deferrable.submit import JobSpec

# Lithops' ``spawn_reducer`` value that submits the reducer with the maps (wait.ALWAYS):
# the reducer then waits for the maps remotely, and nothing waits locally.
SPAWN_REDUCER_AT_ONCE = 0
PHASE_MAP = "map"
PHASE_REDUCE = "reduce"


class PyWrenMapReduceOperator(PyWrenMapOperator):
    """Map ``map_function`` over ``map_iterdata``, then reduce the results with ``reduce_function``.

    Returns the reducer's result (a list of them, one per object, with
    ``reducer_one_per_object``).

    :param reduce_function: called with the list of map results (its first argument).
    :param map_runtime_memory: memory of each map function, in MB (default ``runtime_memory``).
    :param reduce_runtime_memory: memory of the reduce function, in MB (default ``runtime_memory``).
    :param reducer_one_per_object: one reducer per storage object when mapping over a
        bucket (Lithops ``obj_reduce_by_key``).
    :param reducer_wait_local: submit the reducer only when every map call is done.
        The task defers until the map job ends, resumes to submit the reducer (which
        reads the map results from storage itself), and defers again: no worker slot is
        held while either job runs. By default the reducer is submitted with the maps
        and waits for them remotely; one deferral then covers both jobs.
    With ``call_retries``, failed map calls are resubmitted alone (see
    :mod:`pywren_deferrable.retries`); the reducer runs once every map input succeeded.
    The remote reducer of the first job covers the case where no map call failed (one
    deferral, as without retries). When map calls were retried, that reducer has failed
    (Lithops' reducer reads the futures of its own job's map calls, and cannot read
    results of calls another job retried), so the task then submits the reducer itself,
    as ``reducer_wait_local`` does, over the results of every round.
    Every :class:`PyWrenMapOperator` parameter applies as well.
    """

    call_type = "map_reduce"

    def __init__(
        self,
        *,
        reduce_function: Callable[..., Any] | None = None,
        map_runtime_memory: int | None = None,
        reduce_runtime_memory: int | None = None,
        reducer_one_per_object: bool = False,
        reducer_wait_local: bool = False,
        **kwargs: Any,
    ) -> None:
        if "reduce_funtion" in kwargs:  # the seed README's own typo
            raise TypeError("reduce_funtion is a typo (in the seed's README): use reduce_function")
        if reduce_function is None:
            raise TypeError("reduce_function is required: the function that reduces the map results")
        super().__init__(**kwargs)
        self.reduce_function = check_payload_function("reduce_function", reduce_function)
        # Lithops calls the reducer with one input, the list of map results (plus what it injects).
        check_lithops_binding(
            "reduce_function (called with the list of map results)",
            self.reduce_function,
            [([],)],
            None,
            single=True,
        )
        self.map_runtime_memory = check_optional_positive_int("map_runtime_memory", map_runtime_memory)
        self.reduce_runtime_memory = check_optional_positive_int(
            "reduce_runtime_memory", reduce_runtime_memory
        )
        self.reducer_one_per_object = bool(reducer_one_per_object)
        self.reducer_wait_local = bool(reducer_wait_local)
        if self.reducer_one_per_object and self.call_retries:
            raise ValueError(
                "reducer_one_per_object cannot be combined with call_retries: the reducers follow "
                "Lithops' split of objects into calls, which a retried call leaves"
            )
        if self.reducer_one_per_object and self.reducer_wait_local:
            raise ValueError(
                "reducer_one_per_object needs the remote reducer: Lithops only knows which map calls "
                "belong to which object while it submits the job; use reducer_wait_local=False"
            )

    def map_spec(self, context: Any, config: dict[str, Any]) -> JobSpec:
        """The map job alone (``reducer_wait_local``, and the rounds of ``call_retries``)."""
        iterdata, extra = self.job_iterdata(context, config)
        options = self.map_options()
        options["extra_args"] = extra
        options["runtime_memory"] = self.map_runtime_memory or self.runtime_memory
        return JobSpec(
            call_type="map", function=self.map_function, iterdata=iterdata, config=config, options=options
        )

    def retry_spec(self, context: Any, config: dict[str, Any]) -> JobSpec:
        return self.map_spec(context, config)

    def first_retry_state(self, spec: JobSpec, job: JobRef) -> dict[str, Any]:
        return {} if self.reducer_one_per_object else super().first_retry_state(spec, job)

    def build_spec(self, context: Any, config: dict[str, Any]) -> JobSpec:
        if self.reducer_wait_local:
            return self.map_spec(context, config)
        iterdata, extra = self.job_iterdata(context, config)
        options = self.map_options()
        options["extra_args"] = extra
        del options["runtime_memory"]
        options.update(
            map_runtime_memory=self.map_runtime_memory or self.runtime_memory,
            reduce_runtime_memory=self.reduce_runtime_memory or self.runtime_memory,
            obj_reduce_by_key=self.reducer_one_per_object,
            spawn_reducer=SPAWN_REDUCER_AT_ONCE,
        )
        return JobSpec(
            call_type="map_reduce",
            function=self.map_function,
            iterdata=iterdata,
            reduce_function=self.reduce_function,
            config=config,
            options=options,
        )

    def first_stage_state(self) -> dict[str, Any]:
        return {"phase": PHASE_MAP} if self.reducer_wait_local else {}

    def reduce_spec(self, map_job: JobRef, config: dict[str, Any]) -> JobSpec:
        """The reducer of ``reducer_wait_local``: one call reading the map results from storage."""
        options = self.common_options()
        options["runtime_memory"] = self.reduce_runtime_memory or self.runtime_memory
        return JobSpec(
            call_type="call_async",
            function=reduce_map_job,
            iterdata={"reduce_function": self.reduce_function, "map_job": map_job.to_dict()},
            config=config,
            options=options,
        )

    def reduce_rounds_spec(self, state: RetryState, config: dict[str, Any]) -> JobSpec:
        """The reducer after retry rounds: one call reading every round's map results."""
        options = self.common_options()
        options["runtime_memory"] = self.reduce_runtime_memory or self.runtime_memory
        return JobSpec(
            call_type="call_async",
            function=reduce_map_rounds,
            iterdata={
                "reduce_function": self.reduce_function,
                "map_rounds": RoundResults(state).reducer_rounds(),
            },
            config=config,
            options=options,
        )

    def finish_rounds(self, context: Any, event: Any, state: RetryState) -> Any:
        """Every map input succeeded. With the remote reducer and no retried call its
        result is the task's; otherwise submit the reducer over every round, and defer."""
        if len(state.rounds) == 1 and len(state.last.job.job_ids) > 1:
            return self.shape_results(self.finish_job(event, forget_key=task_lineage(context)))
        self.log.info("Every map input done after %d round(s); submitting the reducer", len(state.rounds))
        deadline = self.resume_state(event).get("deadline")
        config = self._hook().get_config()
        only = RoundResults(state).only_round()
        # One map job ran every input: its reducer reads it as Lithops' own would (the
        # results of futures the map calls returned included); rounds are merged by input.
        spec = (
            self.reduce_spec(only.job, config) if only is not None else self.reduce_rounds_spec(state, config)
        )
        reduce_job = self.submit_spec(context, spec, deadline)
        reduce_state = {"phase": PHASE_REDUCE, "also_clean": state.all_jobs()}
        self.remember_job(context, config, reduce_job, reduce_state)
        return self.wait_for_job(context, reduce_job, deadline=deadline, **reduce_state)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        state = self.resume_state(event)
        if RETRY_STATE_KEY in state:
            self.remember_link_from_event(event)
            return resume_round(self, context, event)
        if state.get("phase") != PHASE_MAP:
            return super().execute_complete(context, event)
        # The map job of reducer_wait_local ended: fail (with its tracebacks) or submit the reducer.
        self.remember_link_from_event(event)
        map_job = job_from_event(event)
        self.finish_job(event, fetch=False)  # raises unless every map call succeeded
        self.log.info("Map job %s done; submitting the reducer", map_job.executor_id)
        deadline = state.get("deadline")
        config = self._hook().get_config()
        reduce_job = self.submit_spec(context, self.reduce_spec(map_job, config), deadline)
        reduce_state = {"phase": PHASE_REDUCE, "also_clean": [map_job.to_dict()]}
        self.remember_job(context, config, reduce_job, reduce_state)
        return self.wait_for_job(context, reduce_job, deadline=deadline, **reduce_state)

    def shape_results(self, results: Any) -> Any:
        if self.reducer_one_per_object or not isinstance(results, list) or len(results) != 1:
            return results
        return results[0]

    def usage_memory(self) -> int | None:
        return self.map_runtime_memory or self.runtime_memory

    def payload_functions(self) -> list[Callable[..., Any]]:
        return [self.map_function, self.reduce_function]


IbmPyWrenMapReduceOperator = PyWrenMapReduceOperator
"""The seed plugin's name, kept so that seed DAGs work with an import change only."""
