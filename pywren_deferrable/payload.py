"""Payload functions defined in a DAG file.

Lithops pickles a function by reference to its module when that module can be imported.
A function defined in a DAG file (a module that imports Airflow) would then make the
serverless worker import the DAG file, and with it Airflow, which fails there (and is
slow anywhere). So the DAG file's module is registered with cloudpickle to be pickled
*by value*: the function's code travels, not an import. What the function itself
references must still be free of Airflow objects; that is checked when the operator is
built, at DAG-parse time, with a message that says what to do.
"""

from __future__ import annotations

import dis
import inspect
import pickletools
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

FORBIDDEN_PREFIXES = ("airflow", "pywren_deferrable.operators", "pywren_deferrable.hooks")


def _is_forbidden(module_name: str) -> bool:
    return any(module_name == p or module_name.startswith(p + ".") for p in FORBIDDEN_PREFIXES)


def module_imports_airflow(module: types.ModuleType) -> bool:
    """True when ``module``'s globals hold Airflow modules or objects (a DAG file does)."""
    for value in vars(module).values():
        name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(name, str) and _is_forbidden(name):
            return True
    return False


class _Unknown:
    """A stack value the walk does not track (a built object, a number...)."""


_UNKNOWN = _Unknown()
_STRING_OPCODES = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
)
_TUPLE_OPCODES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_MEMO_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
# cloudpickle pickles a module object as a call of one of these with the module's name.
_MODULE_IMPORTERS = frozenset(
    {("cloudpickle.cloudpickle", "subimport"), ("cloudpickle.cloudpickle", "dynamic_subimport")}
)


@dataclass(frozen=True)
class _Global:
    """The result of loading a global: ``module.qualname``."""

    module: str
    qualname: str


def pickled_globals(payload: bytes) -> set[tuple[str, str]]:
    """Every ``(module, qualname)`` a pickle imports when loaded; ``(module, "")`` for a
    module object that cloudpickle ships by reference. Nothing is run: the pickle's opcodes
    are walked with a model of the unpickler's stack and memo.

    Protocol 4+ pickles name a global with two strings on the stack (``STACK_GLOBAL``),
    and a string already seen is not written again but fetched from the memo
    (``BINGET``): so a name can only be read correctly by following the stack and the
    memo, not from the last strings in the stream.
    """
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[Any, Any] = {}
    found: set[tuple[str, str]] = set()
    for opcode, arg, _pos in pickletools.genops(payload):
        name = opcode.name
        if name in _STRING_OPCODES:
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        elif name in _MEMO_GET_OPCODES:
            stack.append(memo.get(arg, _UNKNOWN))
        elif name in _MEMO_PUT_OPCODES:
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "DUP":
            stack.append(stack[-1])
        elif name == "STACK_GLOBAL":
            qualname, module = stack.pop(), stack.pop()
            if not isinstance(module, str) or not isinstance(qualname, str):
                raise ValueError("a pickled global whose name is not a string: cannot tell what it imports")
            found.add((module, qualname))
            stack.append(_Global(module, qualname))
        elif name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            found.add((module, qualname))
            if name == "INST":
                del stack[marks.pop() :]
            stack.append(_Global(module, qualname))
        elif name in _TUPLE_OPCODES:
            size = _TUPLE_OPCODES[name]
            items = tuple(stack[len(stack) - size :]) if size else ()
            del stack[len(stack) - size :]
            stack.append(items)
        elif name == "TUPLE":
            start = marks.pop()
            items = tuple(stack[start:])
            del stack[start:]
            stack.append(items)
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            if (
                isinstance(func, _Global)
                and (func.module, func.qualname) in _MODULE_IMPORTERS
                and isinstance(args, tuple)
                and args
                and isinstance(args[0], str)
            ):
                found.add((args[0], ""))
            stack.append(_UNKNOWN)
        else:
            before, after = opcode.stack_before, opcode.stack_after
            if pickletools.markobject in before:
                below = before.index(pickletools.markobject)
                del stack[marks.pop() :]
                del stack[len(stack) - below :]
            elif before:
                del stack[len(stack) - len(before) :]
            stack.extend(_UNKNOWN for _ in after)
    return found


def pickled_module_references(payload: bytes) -> set[str]:
    """The modules a pickle imports when loaded (see :func:`pickled_globals`)."""
    return {module for module, _qualname in pickled_globals(payload)}


def imported_in_code(function: Callable[..., Any]) -> set[str]:
    """Modules that ``function``'s own code (and the code nested in it) imports when it runs.

    ``from airflow.sdk import get_current_context`` inside the function is no global of
    the pickle: it only shows in the bytecode, as ``IMPORT_NAME``.
    """
    modules: set[str] = set()
    code = getattr(function, "__code__", None)
    pending = [code] if isinstance(code, types.CodeType) else []
    while pending:
        current = pending.pop()
        for instruction in dis.get_instructions(current):
            if instruction.opname == "IMPORT_NAME" and isinstance(instruction.argval, str):
                modules.add(instruction.argval)
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return modules


def by_value_functions(function: Callable[..., Any]) -> list[Callable[..., Any]]:
    """``function`` and the functions of its own module it calls, which cloudpickle ships
    with it (by value) when that module is registered: their code runs on the worker too."""
    module = getattr(function, "__module__", None)
    seen: dict[int, Callable[..., Any]] = {}
    pending = [function]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        code = getattr(current, "__code__", None)
        global_ns = getattr(current, "__globals__", {})
        if not isinstance(code, types.CodeType):
            continue
        codes = [code]
        names: set[str] = set()
        while codes:
            c = codes.pop()
            names.update(c.co_names)
            codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        for global_name in names:
            value = global_ns.get(global_name)
            if isinstance(value, types.FunctionType) and value.__module__ == module:
                pending.append(value)
    return list(seen.values())


def prepare_payload(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``function`` safe to ship to Lithops, or raise ``TypeError`` saying why not.

    :param name: the operator parameter that holds it (for the message).
    """
    try:
        inspect.signature(function)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name}: {function!r} has no Python signature for Lithops to bind its inputs to ({err}); "
            "wrap it in a def, e.g. def reduce(results): return max(results)"
        ) from None
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    if module is not None and module.__name__ != "__main__" and module_imports_airflow(module):
        cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps(function)
    except Exception as err:
        raise TypeError(
            f"{name}: {getattr(function, '__name__', function)!r} cannot be pickled: {err}"
        ) from err
    try:
        references = {".".join(p for p in ref if p) for ref in pickled_globals(payload)}
    except ValueError as err:
        raise TypeError(f"{name}: {getattr(function, '__name__', function)!r}: {err}") from err
    for shipped in by_value_functions(function):
        references.update(f"import {m}" for m in imported_in_code(shipped) if _is_forbidden(m))
    forbidden = sorted(r for r in references if _is_forbidden(r.removeprefix("import ")))
    if forbidden:
        raise TypeError(
            f"{name}: {getattr(function, '__qualname__', function)!r} uses Airflow objects "
            f"({', '.join(forbidden)}), which the serverless worker cannot import. Do not use "
            "Variables, Connections, hooks, XCom, the task context, operators or the DAG inside it: "
            "read them in the DAG (or a Jinja template) and pass the values as arguments "
            "(extra_params, map_iterdata), or move it to a module that does not import Airflow and "
            "import it from the DAG file."
        )
    return function
