"""Constructor-time argument checks shared by the operators.

Each check raises ``TypeError`` or ``ValueError`` naming the parameter and what was
wrong, at DAG-parse time, without touching the network. Values that Airflow renders
later (XComArg, Jinja strings) are let through here and checked again at execute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from airflow.sdk.definitions._internal.mixins import ResolveMixin


def is_deferred_value(value: Any) -> bool:
    """True for values Airflow fills in at run time: XComArg, ``.output``, Jinja strings."""
    return isinstance(value, ResolveMixin) or (isinstance(value, str) and "{{" in value)


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(f"{name} must be a callable (a function), got {type(value).__name__}: {value!r:.80}")
    return cast(Callable[..., Any], value)


def check_payload_function(name: str, value: Any) -> Callable[..., Any]:
    """A function that will run on Lithops: callable, picklable, free of Airflow objects."""
    from pywren_deferrable.payload import prepare_payload

    return prepare_payload(name, check_callable(name, value))


def check_optional_positive_int(name: str, value: Any, *, minimum: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r:.80}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_optional_positive_number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}: {value!r:.80}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def check_str_dict(name: str, value: Any) -> Any:
    """A dict of str to str (or a value Airflow renders later), else ``TypeError``."""
    if value is None or is_deferred_value(value):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of str to str, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{name} must map str to str; {key!r}: {item!r:.80} is not")
    return dict(value)


def check_module_list(name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"{name} must be a list of module names, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise TypeError(f"{name} must hold module names (non-empty str), got {item!r:.80}")
    return list(value)


def check_iterdata(name: str, value: Any) -> Any:
    """A map's input as Lithops takes it (see :mod:`pywren_deferrable.iterdata`), or a value
    rendered later. Returned as given: a generator is not consumed at parse time."""
    from pywren_deferrable.iterdata import check_shape

    if is_deferred_value(value):
        return value
    return check_shape(name, value)


def has_deferred_parts(items: Iterable[Any]) -> bool:
    """True when an input (or a value inside a tuple/dict input) is filled in at run time."""
    for item in items:
        parts = item.values() if isinstance(item, Mapping) else item if isinstance(item, tuple) else (item,)
        if any(is_deferred_value(part) for part in parts):
            return True
    return False


def check_extra_params(name: str, value: Any) -> Any:
    """Keyword arguments (dict) or positional ones (tuple), or a value rendered later."""
    if value is None or is_deferred_value(value):
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{name} keys must be argument names (str)")
        return dict(value)
    if isinstance(value, list | tuple):
        return tuple(value)
    raise TypeError(
        f"{name} must be a dict of keyword arguments or a list/tuple of positional ones, "
        f"got {type(value).__name__}"
    )
