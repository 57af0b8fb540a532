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

import inspect
import pickletools
import sys
import types
from collections.abc import Callable
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


def pickled_module_references(payload: bytes) -> set[str]:
    """The modules a pickle imports when loaded (read from its opcodes, nothing is run)."""
    modules: set[str] = set()
    strings: list[str] = []
    for opcode, arg, _pos in pickletools.genops(payload):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(str(arg))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            modules.add(strings[-2])
        elif opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
            modules.add(arg.split(" ", 1)[0])
    return modules


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
    forbidden = sorted(m for m in pickled_module_references(payload) if _is_forbidden(m))
    if forbidden:
        raise TypeError(
            f"{name}: {getattr(function, '__qualname__', function)!r} uses Airflow objects "
            f"({', '.join(forbidden)}), which the serverless worker cannot import. Do not reference the "
            "DAG, operators, hooks or other Airflow names inside it, or move it to a module that does "
            "not import Airflow and import it from the DAG file."
        )
    return function
