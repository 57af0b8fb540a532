"""Remote tracebacks that point at the DAG file, not at ``<dynamic-code>``.

Payload functions defined in a DAG file travel by value (see :mod:`.payload`), and
cloudpickle names the file of every code object it ships ``<dynamic-code>`` on purpose
(its pickles stay the same wherever the code was defined). A user reading a failed
call's traceback then sees ``File "<dynamic-code>", line 12, in scale`` with no source
line. The worker that resumes the task parsed the same DAG file, so it knows where each
shipped function came from: this module maps each such frame back to its file, by the
function's name and a line inside its code, and adds the source line.
"""

from __future__ import annotations

import linecache
import re
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import cloudpickle

DYNAMIC_CODE_FILE = "<dynamic-code>"
_DYNAMIC_FRAME = re.compile(
    r'^(?P<indent>[ \t]*)File "<dynamic-code>", line (?P<line>\d+), in (?P<name>[^\n]+?)[ \t]*$', re.M
)


@dataclass(frozen=True)
class CodeSpan:
    """The file and lines of one code object."""

    filename: str
    first: int
    last: int


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _functions_of(value: Any) -> Iterator[types.FunctionType]:
    if isinstance(value, types.FunctionType):
        yield value
    elif isinstance(value, type):
        for member in vars(value).values():
            function = getattr(member, "__func__", member)
            if isinstance(function, types.FunctionType):
                yield function


def shipped_functions(functions: Iterable[Callable[..., Any]]) -> list[types.FunctionType]:
    """``functions``, and every function of their modules when a module travels by value
    (what a payload function calls in its DAG file travels with it)."""
    found: list[types.FunctionType] = []
    for function in functions:
        found.extend(_functions_of(function))
        module = sys.modules.get(getattr(function, "__module__", "") or "")
        if module is not None and cloudpickle.cloudpickle._is_registered_pickle_by_value(module):
            for value in vars(module).values():
                if getattr(value, "__module__", None) == module.__name__:
                    found.extend(_functions_of(value))
    return found


def code_index(functions: Iterable[Callable[..., Any]]) -> dict[str, list[CodeSpan]]:
    """Code name -> where code of that name lies, for the functions shipped by value."""
    index: dict[str, list[CodeSpan]] = {}
    for function in shipped_functions(functions):
        for code in _code_objects(function.__code__):
            lines = [line for _start, _end, line in code.co_lines() if line is not None]
            span = CodeSpan(code.co_filename, code.co_firstlineno, max(lines, default=code.co_firstlineno))
            if span not in index.setdefault(code.co_name, []):
                index[code.co_name].append(span)
    return index


def restore_filenames(text: str, index: dict[str, list[CodeSpan]]) -> str:
    """``text`` with each ``<dynamic-code>`` frame of a known function pointed at its file,
    followed by its source line; frames that match no known function are left alone."""

    def replace(match: re.Match[str]) -> str:
        line, name, indent = int(match["line"]), match["name"], match["indent"]
        spans = [s for s in index.get(name, ()) if s.first <= line <= s.last]
        if len(spans) != 1:  # unknown, or ambiguous: say nothing rather than something wrong
            return match.group(0)
        filename = spans[0].filename
        frame = f'{indent}File "{filename}", line {line}, in {name}'
        source = linecache.getline(filename, line).strip()
        return f"{frame}\n{indent}  {source}" if source else frame

    return _DYNAMIC_FRAME.sub(replace, text) if DYNAMIC_CODE_FILE in text else text
