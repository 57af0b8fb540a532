"""Read a pickle's structure without unpickling it: a symbolic walk of its opcodes.

The triggerer reads pickles that payload functions' workers wrote into object storage
(pywren's ``exc_info``, Lithops' ``new_futures``). Unpickling them there would import
and run whatever they name, in the process that serves every deferred task. This walk
follows the opcodes (``pickletools.genops``) with the pickle's stack and memo modelled
as plain values: globals become :class:`Global` names, calls and object builds become
:class:`Call` records (with the state ``BUILD`` gives them and the items ``APPEND``\\s
add), dicts become :class:`PDict` pairs. Nothing is imported, called or built.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Global:
    """A class or function the pickle names (never imported)."""

    module: str
    name: str


@dataclass(eq=False)
class Call:
    """What unpickling would build by calling ``func(*args)`` (``REDUCE``, ``NEWOBJ``...).

    :param state: what ``BUILD`` would set on the object (its ``__dict__``, as a
        :class:`PDict`), if any.
    :param items: what ``APPEND``/``APPENDS`` would add to it (a list subclass).
    """

    func: Any
    args: Any
    state: Any = None
    items: list[Any] = field(default_factory=list)


@dataclass
class PDict:
    """A dict, as its (key, value) pairs in pickle order."""

    items: list[tuple[Any, Any]] = field(default_factory=list)

    def get(self, key: str) -> Any:
        """The value of the first string ``key``, or ``None``."""
        for item_key, value in self.items:
            if isinstance(item_key, str) and item_key == key:
                return value
        return None

    def has(self, key: str) -> bool:
        """True when the dict has the string ``key``."""
        return any(isinstance(k, str) and k == key for k, _ in self.items)


class Opaque:
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


def walk_pickle(data: bytes) -> Any:
    """The pickle's top value as symbolic values, walking its opcodes (never unpickling).

    Raises ``ValueError`` (or another exception of ``pickletools``) on a malformed pickle.
    """
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
            elif isinstance(stack[-1], Call):
                stack[-1].items.append(item)
        elif name == "APPENDS":
            items = _pop_mark(stack)
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
            elif isinstance(stack[-1], Call):
                stack[-1].items.extend(items)
        elif name == "EMPTY_DICT":
            stack.append(PDict())
        elif name == "DICT":
            items = _pop_mark(stack)
            stack.append(PDict(list(zip(items[::2], items[1::2], strict=False))))
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            if isinstance(stack[-1], PDict):
                stack[-1].items.append((key, value))
        elif name == "SETITEMS":
            items = _pop_mark(stack)
            if isinstance(stack[-1], PDict):
                stack[-1].items.extend(zip(items[::2], items[1::2], strict=False))
        elif name == "EMPTY_SET":
            stack.append(Opaque())
        elif name == "ADDITEMS":
            _pop_mark(stack)
        elif name == "FROZENSET":
            _pop_mark(stack)
            stack.append(Opaque())
        elif name == "GLOBAL":
            module, _, global_name = str(arg).partition(" ")
            stack.append(Global(module, global_name))
        elif name == "STACK_GLOBAL":
            global_name = stack.pop()
            module = stack.pop()
            if not isinstance(module, str) or not isinstance(global_name, str):
                raise ValueError("STACK_GLOBAL without a module and a name")
            stack.append(Global(module, global_name))
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack.append(Call(stack.pop(), args))
        elif name == "NEWOBJ_EX":
            stack.pop()  # kwargs
            args = stack.pop()
            stack.append(Call(stack.pop(), args))
        elif name == "OBJ":
            items = _pop_mark(stack)
            stack.append(Call(items[0], tuple(items[1:])))
        elif name == "INST":
            module, _, global_name = str(arg).partition(" ")
            stack.append(Call(Global(module, global_name), tuple(_pop_mark(stack))))
        elif name == "BUILD":
            state = stack.pop()
            if isinstance(stack[-1], Call):
                stack[-1].state = state
        elif name in ("EXT1", "EXT2", "EXT4", "PERSID"):
            stack.append(Opaque())
        elif name == "BINPERSID":
            stack.pop()
            stack.append(Opaque())
        else:  # out-of-band buffers and anything newer
            raise ValueError(f"unsupported pickle opcode {name}")
    raise ValueError("pickle has no STOP")
