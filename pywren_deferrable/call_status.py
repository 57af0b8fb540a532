"""Parse a Lithops call's ``status.json`` safely (pure functions, no Lithops import).

pywren-ibm-cloud's format is parsed in :mod:`pywren_deferrable.call_status_pywren`;
:func:`parse_call_status` picks the parser by engine.

``status.json`` is JSON written by the Lithops worker. Small results travel inline in
its ``result`` field as the ``repr()`` of their pickle bytes; Lithops turns that back
with ``eval()``. We use ``ast.literal_eval``, which only accepts a literal. The remote
traceback is read from the call's own log (``logs``: base64 of zlib of text), so
reporting a failure never needs to unpickle anything.
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

# A runaway log must not cost the triggerer memory: decompress at most this much.
MAX_LOG_BYTES = 256 * 1024
MAX_ERROR_CHARS = 300
# Lithops inlines results under 8 KiB of pickle; their repr() is at most ~4x that.
MAX_INLINE_RESULT_CHARS = 1024 * 1024
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
    """

    call_id: str
    failed: bool
    error: str | None
    traceback: str | None
    inline_result: bytes | None
    has_output_object: bool
    worker_start: float | None = None


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


def literal_bytes(field: str, value: Any) -> bytes:
    """The bytes of a status field holding a ``repr()`` of bytes, read with
    ``ast.literal_eval`` (never ``eval``) and size-capped."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str) or len(value) > MAX_INLINE_RESULT_CHARS:
        raise StatusParseError(f"status field {field!r} is not a bytes literal")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as err:
        raise StatusParseError(f"status field {field!r} is not a bytes literal") from err
    if not isinstance(parsed, bytes):
        raise StatusParseError(f"status field {field!r} is not a bytes literal")
    return parsed


def parse_status(raw: bytes | str, call_id: str) -> CallStatus:
    """Parse one ``status.json`` (its bytes) of call ``call_id``."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise StatusParseError(f"status of call {call_id} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise StatusParseError(f"status of call {call_id} is not a JSON object")
    failed = bool(data.get("exception", False))
    traceback = extract_traceback(decode_logs(data.get("logs"))) if failed else None
    error = summarize_traceback(traceback) if failed else None
    if failed and error is None:
        error = "the call raised an exception (no traceback in its log)"
    inline = None
    if not failed and data.get("result") is not None:
        inline = literal_bytes("result", data["result"])
    size = data.get("func_result_size") or 0
    if isinstance(size, bool) or not isinstance(size, int | float):
        raise StatusParseError(f"status of call {call_id}: func_result_size is not a number")
    start = data.get("worker_start_tstamp")
    return CallStatus(
        call_id=call_id,
        failed=failed,
        error=error,
        traceback=traceback,
        inline_result=inline,
        has_output_object=(not failed and inline is None and size > 0),
        worker_start=float(start) if isinstance(start, int | float) else None,
    )


def parse_call_status(raw: bytes | str, call_id: str, engine: str = ENGINE_LITHOPS) -> CallStatus:
    """Parse the ``status.json`` of call ``call_id`` as written by ``engine``."""
    if engine == ENGINE_PYWREN:
        from pywren_deferrable.call_status_pywren import parse_pywren_status

        return parse_pywren_status(raw, call_id)
    return parse_status(raw, call_id)


def decode_output(raw: bytes, engine: str = ENGINE_LITHOPS) -> Any:
    """A call's result from its ``output.pickle`` (Lithops pickles the value itself,
    pywren a ``{'result': value}`` dict). Unpickles: for the worker and the reducer only,
    and only on the job's own objects; the trigger never calls it."""
    if engine == ENGINE_PYWREN:
        from pywren_deferrable.call_status_pywren import decode_pywren_output

        return decode_pywren_output(raw)
    return pickle.loads(raw)
