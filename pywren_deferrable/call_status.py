"""Parse a Lithops call's ``status.json`` safely (pure functions, no Lithops import).

pywren-ibm-cloud's format is parsed in :mod:`pywren_deferrable.call_status_pywren`;
:func:`parse_call_status` picks the parser by engine.

``status.json`` is JSON written by the Lithops worker. Small results travel inline in
its ``result`` field as the ``repr()`` of their pickle bytes; Lithops turns that back
with ``eval()``. We use ``ast.literal_eval``, which only accepts a literal. The remote
traceback is read from the call's own log (``logs``: base64 of zlib of text), so
reporting a failure never needs to unpickle anything.

A call whose function returned Lithops futures has ``new_futures`` instead of a result
(read by :mod:`pywren_deferrable.lithops_futures`, never unpickled). A successful call
is only taken to have returned ``None`` when its status says so in the words Lithops
3.8 uses (``func_result_size`` 0 and no field this module does not know): anything
else is a :class:`StatusParseError`, so that a status format we do not understand fails
the task instead of handing it a silent ``None``.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import pickle
import zlib
from dataclasses import dataclass
from typing import Any

from pywren_deferrable.job import ENGINE_LITHOPS, ENGINE_PYWREN
from pywren_deferrable.lithops_futures import (
    MAX_NEW_FUTURES_BYTES,
    FutureRef,
    FuturesParseError,
    check_children,
    read_new_futures,
)

# A runaway log must not cost the triggerer memory: decompress at most this much.
MAX_LOG_BYTES = 256 * 1024
MAX_ERROR_CHARS = 300
# Lithops inlines results under 8 KiB of pickle; their repr() is at most ~4x that.
MAX_INLINE_RESULT_CHARS = 1024 * 1024
# new_futures is the repr() of a pickle: up to 4 characters a byte.
MAX_NEW_FUTURES_CHARS = 4 * MAX_NEW_FUTURES_BYTES
# The fields of a Lithops 3.8 status.json besides its statistics (lithops/monitoring/
# status.py, lithops/worker/handler.py and jobrunner.py). Statistics start with one of
# _STAT_PREFIXES (as lithops/future.py tells them apart).
KNOWN_STATUS_FIELDS = frozenset(
    {
        "exception",
        "exc_info",
        "exc_pickle_fail",
        "activation_id",
        "python_version",
        "call_id",
        "job_id",
        "executor_id",
        "chunksize",
        "worker_calls",
        "type",
        "result",
        "new_futures",
        "logs",
    }
)
_STAT_PREFIXES = ("func_", "host_", "worker_")
_EXCEPTION_START = "EXCEPTION !"
_SECTION_RULE = "-" * 20


class StatusParseError(ValueError):
    """``status.json`` is not what a Lithops worker writes."""


@dataclass(frozen=True)
class CallStatus:
    """What one finished call reported.

    :param call_id: the call id (``00042``).
    :param failed: the call raised.
    :param error: one line describing the remote exception (``ValueError: boom``).
    :param traceback: the remote traceback text, if the log had one.
    :param inline_result: the pickled result when it came inline in the status.
    :param has_output_object: the result is in ``output.pickle`` instead.
    :param worker_start: when the worker started the call (epoch seconds), if known.
    :param worker_end: when the worker ended it (epoch seconds), if known.
    :param new_futures: the futures the call's function returned (Lithops): its results
        are theirs (see :mod:`pywren_deferrable.lithops_futures`).
    """

    call_id: str
    failed: bool
    error: str | None
    traceback: str | None
    inline_result: bytes | None
    has_output_object: bool
    worker_start: float | None = None
    new_futures: tuple[FutureRef, ...] = ()
    worker_end: float | None = None


def decode_logs(encoded: str | None, limit: int = MAX_LOG_BYTES) -> str | None:
    """Decode a status ``logs`` field (base64 of zlib), at most ``limit`` bytes of text."""
    if not encoded or not isinstance(encoded, str):
        return None
    try:
        compressed = base64.b64decode(encoded, validate=False)
        text = zlib.decompressobj().decompress(compressed, limit)
    except (binascii.Error, zlib.error, ValueError):
        return None
    return text.decode("utf-8", errors="replace") or None


def extract_traceback(log_text: str | None) -> str | None:
    """The ``Traceback ...`` block Lithops' job runner prints after ``EXCEPTION !``."""
    if not log_text or _EXCEPTION_START not in log_text:
        return None
    after = log_text.split(_EXCEPTION_START, 1)[1]
    lines = after.splitlines()[1:]  # drop the rest of the marker line
    block: list[str] = []
    for line in lines:
        if line.startswith(_SECTION_RULE):
            break
        block.append(line)
    text = "\n".join(block).strip()
    return text or None


def summarize_traceback(traceback: str | None) -> str | None:
    """The last line of a traceback (``ValueError: boom``), cut to a safe length."""
    if not traceback:
        return None
    last = [line for line in traceback.splitlines() if line.strip()][-1].strip()
    return last[:MAX_ERROR_CHARS]


def literal_bytes(field: str, value: Any, limit: int = MAX_INLINE_RESULT_CHARS) -> bytes:
    """The bytes of a status field holding a ``repr()`` of bytes, read with
    ``ast.literal_eval`` (never ``eval``) and size-capped (``limit`` characters)."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str) or len(value) > limit:
        raise StatusParseError(f"status field {field!r} is not a bytes literal")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as err:
        raise StatusParseError(f"status field {field!r} is not a bytes literal") from err
    if not isinstance(parsed, bytes):
        raise StatusParseError(f"status field {field!r} is not a bytes literal")
    return parsed


def read_status_futures(
    data: dict[str, Any], call_id: str, bucket: str | None = None
) -> tuple[FutureRef, ...]:
    """The futures of a status's ``new_futures`` field (see :func:`parse_status`)."""
    try:
        pickled = literal_bytes("new_futures", data["new_futures"], MAX_NEW_FUTURES_CHARS)
        return read_new_futures(pickled, bucket=bucket)
    except (StatusParseError, FuturesParseError) as err:
        raise StatusParseError(
            f"call {call_id} returned Lithops futures that this provider cannot follow: {err}"
        ) from None


def _unknown_fields(data: dict[str, Any]) -> list[str]:
    return sorted(
        str(k) for k in data if k not in KNOWN_STATUS_FIELDS and not str(k).startswith(_STAT_PREFIXES)
    )


def parse_status(raw: bytes | str, call_id: str, bucket: str | None = None) -> CallStatus:
    """Parse one ``status.json`` (its bytes) of call ``call_id``.

    :param bucket: the job's bucket, to refuse returned futures that live elsewhere.
    :raises StatusParseError: the status is not what a Lithops 3.8 worker writes, or
        does not say clearly what the call returned.
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise StatusParseError(f"status of call {call_id} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise StatusParseError(f"status of call {call_id} is not a JSON object")
    failed = bool(data.get("exception", False))
    traceback = extract_traceback(decode_logs(data.get("logs"))) if failed else None
    error = summarize_traceback(traceback) if failed else None
    if failed and error is None:
        error = "the call raised an exception (no traceback in its log)"
    inline = None
    futures: tuple[FutureRef, ...] = ()
    if not failed and data.get("new_futures") is not None:
        futures = read_status_futures(data, call_id, bucket)
    elif not failed and data.get("result") is not None:
        inline = literal_bytes("result", data["result"])
    size = data.get("func_result_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int | float)):
        raise StatusParseError(f"status of call {call_id}: func_result_size is not a number")
    if not failed and not futures and inline is None and not size:
        # What would be a None result: only when the status says so in words we know.
        unknown = _unknown_fields(data)
        if size is None or unknown:
            what = f"fields {unknown} this provider does not know" if unknown else "no func_result_size"
            raise StatusParseError(
                f"status of call {call_id} has no result this provider understands ({what}): "
                "refusing to report None for it (a newer Lithops?)"
            )
    start, end = _timestamp(data, "worker_start_tstamp"), _timestamp(data, "worker_end_tstamp")
    return CallStatus(
        call_id=call_id,
        failed=failed,
        error=error,
        traceback=traceback,
        inline_result=inline,
        has_output_object=(not failed and not futures and inline is None and size is not None and size > 0),
        worker_start=start,
        new_futures=futures,
        worker_end=end,
    )


def _timestamp(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_call_status(
    raw: bytes | str, call_id: str, engine: str = ENGINE_LITHOPS, bucket: str | None = None
) -> CallStatus:
    """Parse the ``status.json`` of call ``call_id`` as written by ``engine`` (``bucket``:
    the job's, see :func:`parse_status`)."""
    if engine == ENGINE_PYWREN:
        from pywren_deferrable.call_status_pywren import parse_pywren_status

        return parse_pywren_status(raw, call_id)
    return parse_status(raw, call_id, bucket)


def parse_followed_status(raw: bytes | str, future: FutureRef, engine: str, bucket: str | None) -> CallStatus:
    """Parse the status of a call that is followed (a job's own, or one whose future a
    call returned): a status we cannot read, or futures we cannot follow, make a failed
    status whose error says why, instead of an exception, so that the task fails naming
    the call (never a silent ``None``)."""
    try:
        status = parse_call_status(raw, future.call_id, engine, bucket)
        if status.new_futures:
            check_children(status.new_futures, future)
    except StatusParseError as err:
        message = f"unreadable status.json: {err}"
        return CallStatus(future.call_id, True, message[:MAX_ERROR_CHARS], message, None, False)
    except FuturesParseError as err:
        return CallStatus(future.call_id, True, str(err)[:MAX_ERROR_CHARS], str(err), None, False)
    return status


def decode_output(raw: bytes, engine: str = ENGINE_LITHOPS) -> Any:
    """A call's result from its ``output.pickle`` (Lithops pickles the value itself,
    pywren a ``{'result': value}`` dict). Unpickles: for the worker and the reducer only,
    and only on the job's own objects; the trigger never calls it."""
    if engine == ENGINE_PYWREN:
        from pywren_deferrable.call_status_pywren import decode_pywren_output

        return decode_pywren_output(raw)
    return pickle.loads(raw)
