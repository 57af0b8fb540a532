"""Calls whose payload function returned Lithops futures, as Lithops' own client sees them.

A payload function may start jobs of its own (``FunctionExecutor().map(...)``,
``call_async``, ``map_reduce``) and return their futures: Lithops' documented way to fan
out at run time. The worker then writes no result but ``new_futures``, the ``repr()`` of
the pickled futures, into the call's ``status.json`` (``lithops/worker/jobrunner.py``),
and ``get_result()`` waits for those futures instead, at any depth, and returns their
results (``lithops/future.py``, ``lithops/wait.py``).

This module reads ``new_futures`` without unpickling it (a walk of its opcodes, see
:mod:`pywren_deferrable.pickle_walk`): the triggerer must not import Lithops nor run code
from storage, and the pickle carries the storage credentials of the inner executor (they
are never kept nor logged). Only what identifies each future is read: executor, job and
call ids, whether it produces output (the map futures of a ``map_reduce`` do not), and
the bucket its objects live in. Each inner executor must have been created inside the
call that returned it (its id says so), which keeps polling, fetching and cleanup on
the job's own objects.

:func:`result_order` gives the order in which ``get_result()`` returns the results,
without I/O (the caller reads the statuses it asks for), so that the async fetcher of
the worker and the reducer running on Lithops share it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pywren_deferrable.job import is_child_executor, job_key, validate_executor_id, validate_job_id
from pywren_deferrable.pickle_walk import Call, Global, PDict, walk_pickle

# A future pickles to ~1 KiB (the first one carries the storage config); 64 MiB is
# ~50,000 futures returned by one call, more than a Lithops client tracks comfortably.
MAX_NEW_FUTURES_BYTES = 64 * 1024 * 1024
_FUTURE = Global("lithops.future", "ResponseFuture")
_FUTURES_LIST = Global("lithops.utils", "FuturesList")
# Pickle protocols up to 2 spell copyreg the Python 2 way.
_RECONSTRUCTORS = (Global("copyreg", "_reconstructor"), Global("copy_reg", "_reconstructor"))


class FuturesParseError(ValueError):
    """``new_futures`` is not the pickle of futures this provider can follow."""


@dataclass(frozen=True)
class FutureRef:
    """One call of a Lithops job, as a (returned) future names it.

    :param executor_id: the executor that submitted the call's job.
    :param job_id: the job id (``M000``).
    :param call_id: the call id (``00000``).
    :param produce_output: ``get_result()`` returns this call's result (``False`` for
        the map calls of a ``map_reduce``: only its reducer's result counts).
    """

    executor_id: str
    job_id: str
    call_id: str
    produce_output: bool = True

    @property
    def job_key(self) -> str:
        """``<executor_id>-<job_id>``."""
        return job_key(self.executor_id, self.job_id)

    @property
    def name(self) -> str:
        """How messages name the call: ``<job key>/<call id>``."""
        return f"{self.job_key}/{self.call_id}"


class HasStatus(Protocol):
    """What :func:`result_order` needs of a call's parsed status."""

    @property
    def failed(self) -> bool: ...

    @property
    def new_futures(self) -> tuple[FutureRef, ...]: ...


def _state(value: Any) -> PDict | None:
    """The ``__dict__`` a ``ResponseFuture`` pickles, or ``None`` when ``value`` is none."""
    if isinstance(value, Call) and value.func == _FUTURE and isinstance(value.state, PDict):
        return value.state
    return None


def _string(state: PDict, key: str) -> str:
    value = state.get(key)
    if not isinstance(value, str):
        raise FuturesParseError(f"a returned future has no {key} string")
    return value


def _future(value: Any, bucket: str | None) -> FutureRef:
    state = _state(value)
    if state is None:
        raise FuturesParseError(
            f"the returned list holds something other than a Lithops future ({_label(value)})"
        )
    try:
        executor_id = validate_executor_id(_string(state, "executor_id"))
        job_id = validate_job_id(_string(state, "job_id"))
    except ValueError as err:
        raise FuturesParseError(f"a returned future has {err}") from None
    call = _string(state, "call_id")
    if not (len(call) >= 5 and call.isdigit() and call.isascii()):
        raise FuturesParseError(f"a returned future has call id {call!r}, not a Lithops call id")
    path = state.get("_storage_path")
    if bucket is not None and isinstance(path, list) and len(path) == 2 and path[1] != bucket:
        raise FuturesParseError(
            f"a returned future (executor {executor_id}) keeps its objects in bucket {path[1]!r}, "
            f"not in the job's bucket {bucket!r}: not followed"
        )
    produce = state.get("_produce_output")
    read = state.get("_read")
    return FutureRef(executor_id, job_id, call, produce_output=produce is not False and read is not True)


def _label(value: Any) -> str:
    if isinstance(value, Call) and isinstance(value.func, Global):
        return f"{value.func.module}.{value.func.name}"
    if isinstance(value, Call) and value.func in _RECONSTRUCTORS and value.args:
        first = value.args[0] if isinstance(value.args, tuple) else None
        if isinstance(first, Global):
            return f"{first.module}.{first.name}"
    return type(value).__name__


def _futures_of(root: Any) -> list[Any]:
    """The futures Lithops' client adopts from the returned value (``_resolve_new_futures``):
    the future itself, or the items of the list (a ``FuturesList`` pickles as a list
    subclass: its chained jobs' ``alt_list`` is state, not items, as in Lithops)."""
    if _state(root) is not None:
        return [root]
    if isinstance(root, list):
        return root
    if isinstance(root, Call) and root.func in _RECONSTRUCTORS:
        # FuturesList.__reduce__ is object's: copyreg._reconstructor(FuturesList, list, items)
        args = root.args if isinstance(root.args, tuple) else ()
        if len(args) == 3 and args[0] == _FUTURES_LIST and isinstance(args[2], list):
            return args[2] + root.items
    if isinstance(root, Call) and root.func == _FUTURES_LIST:
        return root.items  # a protocol-2 reduce: FuturesList() then its items appended
    raise FuturesParseError(f"new_futures holds {_label(root)}, not Lithops futures")


def read_new_futures(pickled: bytes, *, bucket: str | None = None) -> tuple[FutureRef, ...]:
    """The futures a call returned, from the bytes of its ``new_futures`` (never unpickled).

    :param bucket: the job's bucket: a future whose objects live elsewhere is refused.
    :raises FuturesParseError: anything this provider cannot follow with certainty.
    """
    if len(pickled) > MAX_NEW_FUTURES_BYTES:
        raise FuturesParseError(f"new_futures takes {len(pickled)} bytes, over {MAX_NEW_FUTURES_BYTES}")
    try:
        root = walk_pickle(pickled)
    except FuturesParseError:
        raise
    except Exception as err:  # a malformed pickle fails in many ways
        raise FuturesParseError(
            f"new_futures is not a readable pickle ({type(err).__name__}: {err})"
        ) from None
    futures = tuple(_future(item, bucket) for item in _futures_of(root))
    if not futures:
        raise FuturesParseError("new_futures holds no future")
    return futures


def check_children(futures: Sequence[FutureRef], parent: FutureRef) -> None:
    """Refuse futures of executors that ``parent``'s call did not create: their objects
    are not the job's to poll or clean (and Lithops' ids say whose they are)."""
    for future in futures:
        if not is_child_executor(future.executor_id, parent.executor_id, parent.job_id, parent.call_id):
            raise FuturesParseError(
                f"call {parent.name} returned a future of executor {future.executor_id}, which that call "
                "did not create: this provider follows only the jobs a call submits itself"
            )


@dataclass(frozen=True)
class Leaf:
    """A call whose result ``get_result()`` returns, and the call that returned its future."""

    future: FutureRef
    returned_by: FutureRef | None


def result_order(
    roots: Sequence[FutureRef],
) -> Generator[list[FutureRef], Sequence[HasStatus], tuple[list[Leaf], list[tuple[Leaf, HasStatus]]]]:
    """The calls whose results make up ``get_result()``, in its order, level by level.

    A generator: it yields the futures whose statuses it needs next (the roots, then the
    futures they returned...) and is sent their parsed statuses in the same order. It
    returns ``(leaves, failed)``: the calls that produce results, in order, and every
    failed call (any level) with its status.

    Order: ``get_result()`` waits on a list of futures to which each call that returned
    futures appends them; it returns, in list order, the results of those that did not.
    When each level's calls are read in order, as here, that is breadth-first: the roots'
    own results, then those of the futures they returned, in parent order, and so on.
    (Lithops appends while polling, so a later call that finishes first would put its
    futures first there; this order is the one it gives when calls finish in order.)
    """
    level: list[Leaf] = [Leaf(root, None) for root in roots]
    leaves: list[Leaf] = []
    failed: list[tuple[Leaf, HasStatus]] = []
    while level:
        statuses = yield [leaf.future for leaf in level]
        if len(statuses) != len(level):
            raise ValueError(f"expected {len(level)} statuses, got {len(statuses)}")
        children: list[Leaf] = []
        for leaf, status in zip(level, statuses, strict=True):
            if status.failed:
                failed.append((leaf, status))
            elif status.new_futures:
                children.extend(Leaf(child, leaf.future) for child in status.new_futures)
            elif leaf.future.produce_output:
                leaves.append(leaf)
        level = children
    return leaves, failed
