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
walked as opcodes (``pickletools.genops``) to find the exception class and its message.
:func:`pickled_exception`, :func:`format_pywren_traceback` and :func:`decode_pywren_output`
are for the worker, which already runs the job's own code; the last two unpickle.
"""

from __future__ import annotations

import json
import pickle
import pickletools
import re
from dataclasses import dataclass, field
from typing import Any

from pywren_deferrable.call_status import MAX_ERROR_CHARS, CallStatus, StatusParseError, literal_bytes

GENERIC_ERROR = "the call raised an exception (its exc_info could not be read)"
# Real exc_info pickles are a few KiB (~60 bytes a frame); walking one costs ~1 s per MiB.
MAX_EXC_INFO_BYTES = 256 * 1024
_TBLIB_MODULES = frozenset({"pywren_ibm_cloud.libs.tblib.pickling_support", "tblib.pickling_support"})
_BUILTIN_MODULES = frozenset({"builtins", "__builtin__", "exceptions"})
_CLASS_REPR = re.compile(r"<class '([^']+)'>")
_PUSH_ARG_OPS = frozenset(
    {
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "FLOAT",
        "BINFLOAT",
    }
)
_CONSTANT_OPS: dict[str, Any] = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


class OutputDecodeError(ValueError):
    """``output.pickle`` is not the ``{'result': value}`` a pywren worker writes."""


# Symbolic values of the opcode walk: nothing is imported, called or built.
@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Call:
    func: Any
    args: Any


@dataclass
class _Dict:
    items: list[tuple[Any, Any]] = field(default_factory=list)

    def get(self, key: str) -> Any:
        for item_key, value in self.items:
            if isinstance(item_key, str) and item_key == key:
                return value
        return None


class _Opaque:
    """A value the walk does not model (sets, extension codes, persistent ids)."""


class _Mark:
    """The ``MARK`` sentinel on the walk's stack."""


_MARK = _Mark()


def _pop_mark(stack: list[Any]) -> list[Any]:
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is _MARK:
            items = stack[index + 1 :]
            del stack[index:]
            return items
    raise ValueError("pickle pops a MARK that is not there")


def _memo_index(arg: Any) -> int:
    if not isinstance(arg, int) or isinstance(arg, bool):
        raise ValueError("pickle memo index is not an integer")
    return arg


def _walk_pickle(data: bytes) -> Any:
    """The pickle's top value as symbolic values, walking its opcodes (never unpickling)."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    for opcode, arg, _pos in pickletools.genops(data):
        name = opcode.name
        if name in _PUSH_ARG_OPS:
            stack.append(arg)
        elif name in _CONSTANT_OPS:
            stack.append(_CONSTANT_OPS[name])
        elif name in ("PROTO", "FRAME"):
            continue
        elif name == "STOP":
            return stack.pop()
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            _pop_mark(stack)
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[_memo_index(arg)] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[_memo_index(arg)])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            items = stack[-count:]
            del stack[-count:]
            stack.append(tuple(items))
        elif name == "TUPLE":
            stack.append(tuple(_pop_mark(stack)))
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "LIST":
            stack.append(_pop_mark(stack))
        elif name == "APPEND":
            item = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(item)
        elif name == "APPENDS":
            items = _pop_mark(stack)
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "EMPTY_DICT":
            stack.append(_Dict())
        elif name == "DICT":
            items = _pop_mark(stack)
            stack.append(_Dict(list(zip(items[::2], items[1::2], strict=False))))
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            if isinstance(stack[-1], _Dict):
                stack[-1].items.append((key, value))
        elif name == "SETITEMS":
            items = _pop_mark(stack)
            if isinstance(stack[-1], _Dict):
                stack[-1].items.extend(zip(items[::2], items[1::2], strict=False))
        elif name == "EMPTY_SET":
            stack.append(_Opaque())
        elif name == "ADDITEMS":
            _pop_mark(stack)
        elif name == "FROZENSET":
            _pop_mark(stack)
            stack.append(_Opaque())
        elif name == "GLOBAL":
            module, _, global_name = str(arg).partition(" ")
            stack.append(_Global(module, global_name))
        elif name == "STACK_GLOBAL":
            global_name = stack.pop()
            module = stack.pop()
            if not isinstance(module, str) or not isinstance(global_name, str):
                raise ValueError("STACK_GLOBAL without a module and a name")
            stack.append(_Global(module, global_name))
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack.append(_Call(stack.pop(), args))
        elif name == "NEWOBJ_EX":
            stack.pop()  # kwargs
            args = stack.pop()
            stack.append(_Call(stack.pop(), args))
        elif name == "OBJ":
            items = _pop_mark(stack)
            stack.append(_Call(items[0], tuple(items[1:])))
        elif name == "INST":
            module, _, global_name = str(arg).partition(" ")
            stack.append(_Call(_Global(module, global_name), tuple(_pop_mark(stack))))
        elif name == "BUILD":
            stack.pop()  # the state; the object stays as it is
        elif name in ("EXT1", "EXT2", "EXT4", "PERSID"):
            stack.append(_Opaque())
        elif name == "BINPERSID":
            stack.pop()
            stack.append(_Opaque())
        else:  # out-of-band buffers and anything newer
            raise ValueError(f"unsupported pickle opcode {name}")
    raise ValueError("pickle has no STOP")


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
    if not isinstance(value, _Call):
        return None
    func = value.func
    if isinstance(func, _Global) and func.module in _TBLIB_MODULES:
        reduced = value.args if isinstance(value.args, tuple) and len(value.args) >= 2 else None
        if func.name == "unpickle_exception" and reduced:
            # tblib < 3 (pywren's vendored copy): unpickle_exception(exc_class, args, cause, traceback)
            return reduced[1]
        if func.name == "unpickle_exception_with_attrs" and reduced and isinstance(reduced[1], _Dict):
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
    if isinstance(root, tuple) and len(root) == 3 and isinstance(root[0], _Global):
        return _one_line(_class_label(root[0].module, root[0].name), _message(_exception_args(root[1])))
    if isinstance(root, _Dict):  # exc_pickle_fail
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
        root = _walk_pickle(pickled)
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
    start = data.get("worker_start_tstamp")
    return CallStatus(
        call_id=call_id,
        failed=failed,
        error=error,
        traceback=None,
        inline_result=None,
        has_output_object=(not failed and data.get("result") is True),
        worker_start=float(start) if isinstance(start, int | float) and not isinstance(start, bool) else None,
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
