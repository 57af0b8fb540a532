"""Parse a legacy pywren-ibm-cloud 1.7.3 call's ``status.json`` safely (no pywren import).

pywren 1.7.3 writes ``status.json`` as JSON with ``exception`` (bool), ``result`` (bool:
the call returned non-``None`` and ``{'result': value}`` was pickled to ``output.pickle``),
``worker_start_tstamp`` and timing fields. There is no log field. When the call raised,
``exc_info`` is the ``str()`` of the pickle bytes of ``(exc_type, exc_value, exc_traceback)``
(the traceback pickled with pywren's vendored tblib), or, with ``exc_pickle_fail``, of a
dict ``{'exc_type': str, 'exc_value': str, 'exc_traceback': ..., 'pickle_exception': ...}``.
pywren reads it back with ``pickle.loads(eval(...))``.

:func:`parse_pywren_status` runs in the triggerer on data from object storage, so it never
unpickles: the bytes literal is read with ``ast.literal_eval`` and the pickle is only
walked as opcodes (:mod:`pywren_deferrable.pickle_walk`) to find the exception class and its message.
:func:`pickled_exception`, :func:`format_pywren_traceback` and :func:`decode_pywren_output`
are for the worker, which already runs the job's own code; the last two unpickle.
"""

from __future__ import annotations

import json
import pickle
import re
from typing import Any

from pywren_deferrable.call_status import MAX_ERROR_CHARS, CallStatus, StatusParseError, literal_bytes
from pywren_deferrable.pickle_walk import Call, Global, PDict, walk_pickle

GENERIC_ERROR = "the call raised an exception (its exc_info could not be read)"
# Real exc_info pickles are a few KiB (~60 bytes a frame); walking one costs ~1 s per MiB.
MAX_EXC_INFO_BYTES = 256 * 1024
_TBLIB_MODULES = frozenset({"pywren_ibm_cloud.libs.tblib.pickling_support", "tblib.pickling_support"})
_BUILTIN_MODULES = frozenset({"builtins", "__builtin__", "exceptions"})
_CLASS_REPR = re.compile(r"<class '([^']+)'>")


class OutputDecodeError(ValueError):
    """``output.pickle`` is not the ``{'result': value}`` a pywren worker writes."""


def _class_label(module: str, name: str) -> str:
    return name if module in _BUILTIN_MODULES else f"{module}.{name}"


def _message(args: Any) -> str:
    """The message of an exception with these ``args`` (first string argument)."""
    if not isinstance(args, tuple):
        return ""
    if len(args) >= 2 and args[0] == "HANDLER" and isinstance(args[1], str):
        return args[1]  # pywren's handler raises e.g. TimeoutError('HANDLER', msg)
    for arg in args:
        if isinstance(arg, str):
            return arg
    if len(args) == 1 and isinstance(args[0], int | float | bool | None):
        return str(args[0])
    return ""


def _exception_args(value: Any) -> Any:
    if not isinstance(value, Call):
        return None
    func = value.func
    if isinstance(func, Global) and func.module in _TBLIB_MODULES:
        reduced = value.args if isinstance(value.args, tuple) and len(value.args) >= 2 else None
        if func.name == "unpickle_exception" and reduced:
            # tblib < 3 (pywren's vendored copy): unpickle_exception(exc_class, args, cause, traceback)
            return reduced[1]
        if func.name == "unpickle_exception_with_attrs" and reduced and isinstance(reduced[1], PDict):
            # tblib 3 (installed process-wide by Lithops, for one): (exc_class, attrs, ...),
            # attrs holding the exception's "args".
            return reduced[1].get("args")
        return None
    return value.args  # default reduce: exc_class(*args)


def _one_line(label: str, message: str) -> str:
    message = " ".join(part.strip() for part in message.splitlines() if part.strip())
    text = f"{label}: {message}" if message else label
    return text[:MAX_ERROR_CHARS]


def _summarize(root: Any) -> str | None:
    if isinstance(root, tuple) and len(root) == 3 and isinstance(root[0], Global):
        return _one_line(_class_label(root[0].module, root[0].name), _message(_exception_args(root[1])))
    if isinstance(root, PDict):  # exc_pickle_fail
        exc_type = root.get("exc_type")
        exc_value = root.get("exc_value")
        if not isinstance(exc_type, str):
            return None
        matched = _CLASS_REPR.fullmatch(exc_type.strip())
        label = matched.group(1) if matched else exc_type
        if label.startswith("builtins."):
            label = label[len("builtins.") :]
        return _one_line(label, exc_value if isinstance(exc_value, str) else "")
    return None


def summarize_exc_info(pickled: bytes) -> str | None:
    """``ExcType: message`` from pywren's ``exc_info`` pickle, read statically, or ``None``.

    Walks the opcodes with ``pickletools.genops`` and models the stack symbolically:
    nothing is imported or unpickled. Builtin classes are shown by name, others as
    ``module.Name``. Any malformed or unexpected pickle, or one over
    ``MAX_EXC_INFO_BYTES``, gives ``None``.
    """
    if len(pickled) > MAX_EXC_INFO_BYTES:
        return None
    try:
        root = walk_pickle(pickled)
        return _summarize(root)
    except Exception:  # a malformed pickle can fail in many ways; it only loses the summary
        return None


def _load_status(raw: bytes | str, call_id: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise StatusParseError(f"status of call {call_id} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise StatusParseError(f"status of call {call_id} is not a JSON object")
    for flag in ("exception", "exc_pickle_fail", "result"):
        if data.get(flag) is not None and not isinstance(data[flag], bool):
            raise StatusParseError(f"status of call {call_id}: {flag} is not a boolean")
    return data


def parse_pywren_status(raw: bytes | str, call_id: str) -> CallStatus:
    """Parse one pywren 1.7.3 ``status.json`` (its bytes) of call ``call_id``.

    Never unpickles. ``error`` is read statically from ``exc_info`` (a generic message when
    it cannot be); ``traceback`` and ``inline_result`` are always ``None`` (pywren keeps
    results in ``output.pickle``; see :func:`format_pywren_traceback` for the traceback).
    """
    data = _load_status(raw, call_id)
    failed = data.get("exception") is True
    error = None
    if failed:
        try:
            pickled = literal_bytes("exc_info", data.get("exc_info"))
        except StatusParseError:
            error = GENERIC_ERROR
        else:
            error = summarize_exc_info(pickled) or GENERIC_ERROR
    elif data.get("new_futures"):
        # pywren pickles the futures into output.pickle and its own wait() follows them;
        # this provider follows returned futures on the Lithops engine only. Returning the
        # future objects as the result would be a silent wrong result: fail the call instead.
        failed = True
        error = (
            "the function returned pywren futures, which this provider follows on the Lithops engine "
            "only: use the Lithops engine, or return the results instead of the futures"
        )
    start = data.get("worker_start_tstamp")
    end = data.get("worker_end_tstamp")
    return CallStatus(
        call_id=call_id,
        failed=failed,
        error=error,
        traceback=None,
        inline_result=None,
        has_output_object=(not failed and data.get("result") is True),
        worker_start=float(start) if isinstance(start, int | float) and not isinstance(start, bool) else None,
        worker_end=float(end) if isinstance(end, int | float) and not isinstance(end, bool) else None,
    )


def pickled_exception(raw: bytes | str) -> bytes | None:
    """The ``exc_info`` pickle bytes of a failed call's status, ``None`` if it did not fail.

    Does not unpickle. Raises :class:`StatusParseError` when the status is not JSON or
    ``exc_info`` is not a (size-capped) bytes literal.
    """
    data = _load_status(raw, "?")
    if data.get("exception") is not True or data.get("exc_info") is None:
        return None
    return literal_bytes("exc_info", data["exc_info"])


def format_pywren_traceback(pickled: bytes) -> str | None:
    """The remote traceback text of an ``exc_info`` pickle (worker side only).

    **This unpickles** ``pickled``: call it only in the worker, which already trusts and
    runs the job's own objects, never in the triggerer. It needs pywren-ibm-cloud (its
    vendored tblib rebuilds the traceback) and the exception's class importable; returns
    ``None`` when either is missing or the pickle does not load.

    Side effect: it installs pywren's vendored tblib pickling support, i.e. registers
    tblib's reducer for every exception class (``copyreg``) for the rest of the process.
    Importing ``pywren_ibm_cloud`` at all already does that (its ``future`` module calls
    ``install()`` on import), and so does any unpickling of pywren's ``exc_info``.
    """
    try:
        from pywren_ibm_cloud.libs.tblib import pickling_support
    except Exception:  # not installed, or its package fails to import on this Python
        return None
    pickling_support.install()
    import traceback as tb_module
    from types import TracebackType

    try:
        loaded = pickle.loads(pickled)
        if isinstance(loaded, dict):  # exc_pickle_fail
            exc_type = str(loaded.get("exc_type", "Exception"))
            matched = _CLASS_REPR.fullmatch(exc_type.strip())
            label = matched.group(1) if matched else exc_type
            lines = []
            remote_tb = loaded.get("exc_traceback")
            if isinstance(remote_tb, TracebackType):
                lines = ["Traceback (most recent call last):\n", *tb_module.format_tb(remote_tb)]
            lines.append(f"{label}: {loaded.get('exc_value', '')}\n")
            return "".join(lines)
        exc_type, exc_value, remote_tb = loaded
        args: Any = getattr(exc_value, "args", ())
        if len(args) == 2 and args[0] == "HANDLER":
            # pywren's handler raises e.g. TimeoutError('HANDLER', msg) and shows only msg.
            exc_value = exc_type(args[1])
            exc_value.__traceback__ = remote_tb
        return "".join(tb_module.format_exception(exc_type, exc_value, remote_tb))
    except Exception:  # unpickling runs arbitrary reducers: anything can fail
        return None


def decode_pywren_output(raw: bytes) -> Any:
    """The value a pywren call returned, from its ``output.pickle`` (``{'result': value}``).

    **This unpickles** ``raw``: worker side only. Raises :class:`OutputDecodeError` when the
    bytes are not a pickle of a dict with a ``result`` key; errors importing the value's
    classes propagate as they are.
    """
    try:
        loaded = pickle.loads(raw)
    except (pickle.UnpicklingError, EOFError, IndexError, ValueError) as err:
        raise OutputDecodeError(f"output.pickle is not a pickle: {err}") from err
    if not isinstance(loaded, dict) or "result" not in loaded:
        raise OutputDecodeError(
            f"output.pickle holds {type(loaded).__name__}, not pywren's {{'result': value}} dict"
        )
    return loaded["result"]
