"""A map's input, the way Lithops reads it, and the parameters Lithops fills in itself.

Pure functions, no Lithops import (the parse-time checks run in the DAG processor).

What ``FunctionExecutor.map(f, iterdata)`` does with ``iterdata`` (Lithops 3.8,
``lithops/utils.py``: ``format_data`` / ``verify_args``; pywren-ibm-cloud did the same):

* a ``list`` is one call per element; a ``range`` or a ``set`` is made a list first;
* anything else is **one** call with that value: a bare ``'cos://bucket/prefix/'`` string
  (then split into one call per object, or per chunk, by the partitioner), a tuple (one
  call with the tuple as positional arguments), a dict (one call with keyword arguments);
* an element that is a tuple gives positional arguments, a dict keyword arguments, any
  other value the first parameter. The parameters Lithops fills in when the call runs
  (:data:`INJECTED_PARAMETERS`) are left out when binding; a function with an ``obj``
  parameter processes objects: its ``obj`` inputs are storage URLs, ``http(s)`` URLs or
  local paths, which Lithops' partitioner lists and splits.

The operators hand Lithops exactly that, with these differences, each because the
Lithops behaviour would go wrong silently or late in a DAG (see docs/parity.md):

* a generator (or any iterator) is materialised into a list when the task runs; Lithops
  would make it one call, whose input then cannot be pickled. It is never consumed at
  parse time: every parse of the DAG file makes a new one, and the task uses the one of
  its own parse;
* a bare string that is no URL, a bare dict, and other values Lithops would wrap as one
  call (a number, a frozenset...) are refused at parse time (most likely a list was
  meant; write ``['abc']`` or ``[{...}]`` for one call);
* a value given for an injected parameter is refused: Lithops would overwrite it;
* what Lithops' ``verify_args`` or partitioner would refuse at submit (an input that does
  not fit the signature, an ``obj`` input that is no URL) is refused at parse time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pywren_deferrable.config import STORAGE_BACKENDS

# lithops.utils._INJECTED_ARGS and lithops/worker/jobrunner.py ``_fill_optional_args``:
# when the function's signature names one of these, the worker passes it in.
INJECTED_PARAMETERS: dict[str, str] = {
    "id": "the call's number in its job (0, 1, ...)",
    "storage": "a lithops.Storage client of the job's storage backend",
    "ibm_cos": "an IBM COS (ibm_boto3) client; the Connection needs an ibm_cos section",
    "rabbitmq": "a pika connection to the config's rabbitmq amqp_url",
}
# A function with this parameter processes objects (lithops.utils.is_object_processing_function).
OBJECT_PARAMETER = "obj"
# What users write for "the storage of my Connection" (Lithops reads ``s3`` as AWS S3 and
# ``cos`` as IBM COS; the operators point them at the Connection's S3-compatible storage).
GENERIC_URL_SCHEMES = frozenset({"s3", "cos"})
HTTP_SCHEMES = frozenset({"http", "https"})
URL_SCHEMES = STORAGE_BACKENDS | GENERIC_URL_SCHEMES | HTTP_SCHEMES


def url_scheme(value: str) -> str | None:
    """The scheme of ``value`` when it is an object URL Lithops can map over, else None."""
    scheme, sep, _rest = value.partition("://")
    return scheme if sep and scheme in URL_SCHEMES else None


def check_object_url(name: str, url: str) -> str:
    """A storage URL names a bucket (``cos://bucket/...``), an http(s) URL a host.

    :raises ValueError: naming ``name`` when it does not.
    """
    _scheme, sep, path = url.partition("://")
    if sep and (not path or path.startswith("/")):
        raise ValueError(f"{name}: the object URL {url!r} names no bucket")
    return url


def user_signature(function: Callable[..., Any]) -> inspect.Signature:
    """``function``'s signature without the parameters Lithops injects: what inputs bind to."""
    signature = inspect.signature(function)
    return signature.replace(
        parameters=[p for n, p in signature.parameters.items() if n not in INJECTED_PARAMETERS]
    )


def injected_parameters(function: Callable[..., Any]) -> list[str]:
    """The parameters of ``function`` that Lithops fills in when the call runs."""
    return [n for n in inspect.signature(function).parameters if n in INJECTED_PARAMETERS]


def is_object_function(function: Callable[..., Any]) -> bool:
    """True when ``function`` takes ``obj``: Lithops then maps over storage objects."""
    return OBJECT_PARAMETER in inspect.signature(function).parameters


def is_lazy(value: Any) -> bool:
    """A generator or other one-shot iterator: read once, when the task runs."""
    return isinstance(value, Iterator)


def is_no_iterdata(value: Any) -> bool:
    """``None`` or an empty list/tuple: what seed DAGs pass as ``map_iterdata`` (which the
    seed's README made mandatory) when the inputs come from ``iterdata_from_task``."""
    return value is None or (isinstance(value, list | tuple) and not value)


def check_shape(name: str, value: Any) -> Any:
    """The parse-time check of a map's input (see the module docstring). Returns it as given:
    nothing is consumed here.

    :raises TypeError: for a bare non-URL string, bytes, a dict, a non-iterable.
    :raises ValueError: for an empty list, or a URL without a bucket.
    """
    if isinstance(value, str):
        if url_scheme(value) is None:
            raise TypeError(
                f"{name} must be a list of call inputs or a storage URL (cos://bucket/prefix/, "
                f"s3://..., https://...), got the bare string {value!r:.60}; write [{value!r:.60}] "
                "for one call with it"
            )
        return check_object_url(name, value)
    if isinstance(value, bytes | bytearray):
        raise TypeError(f"{name} must be a list of call inputs, got bare bytes; write [b'...'] for one call")
    if isinstance(value, Mapping):
        raise TypeError(f"{name} must be a list of call inputs, got a dict; write [{{...}}] for one call")
    if is_lazy(value):
        return value
    if isinstance(value, list | range | set | tuple):
        if not value and not isinstance(value, tuple):
            raise ValueError(f"{name} is empty: a map needs at least one input")
        return value
    raise TypeError(
        f"{name} must be a list of call inputs (or a range, set, tuple, generator or storage URL), "
        f"got {type(value).__name__}"
    )


def as_call_list(name: str, value: Any) -> list[Any]:
    """The list of call inputs Lithops makes of ``value`` (``format_data``), with a
    generator read here; a copy, since Lithops updates dict inputs in place.

    :raises ValueError: when there is no input at all.
    """
    check_shape(name, value)
    # A URL string or a tuple is one call, as in Lithops.
    items = list(value) if isinstance(value, list | range | set) or is_lazy(value) else [value]
    if not items:
        raise ValueError(f"{name} is empty: a map needs at least one input")
    return items


def object_positions(function: Callable[..., Any]) -> tuple[int | None, bool]:
    """Where ``obj`` lands among an input's positional values, and whether a bare element
    (neither tuple nor dict) is the ``obj``: Lithops binds it to the first user parameter."""
    if not is_object_function(function):
        return None, False
    names = list(user_signature(function).parameters)
    index = names.index(OBJECT_PARAMETER)
    return index, index == 0


def check_injected_not_given(
    name: str, function: Callable[..., Any], items: list[Any], *, single: bool = False
) -> None:
    """Refuse inputs that give a value to an injected parameter: Lithops would overwrite it."""
    injected = set(injected_parameters(function))
    for index, item in enumerate(items):
        if isinstance(item, dict):
            given = sorted(injected & set(item))
            if given:
                raise ValueError(
                    f"{name if single else f'{name}[{index}]'} gives {given[0]!r}, which Lithops fills in itself "
                    f"({INJECTED_PARAMETERS[given[0]]}); leave it out of the inputs"
                )


def bind_to_user_signature(
    name: str, function: Callable[..., Any], items: list[Any], extra: dict[str, Any] | None
) -> list[Any]:
    """Bind tuple and single inputs to ``function``'s user parameters, one kwargs dict each.

    Needed with a dict ``extra_params``: Lithops would append the dict's *keys* as
    positional arguments to a non-dict input. Dict inputs are kept as they are.

    :raises TypeError: naming the input that does not fit the signature.
    """
    signature = user_signature(function)
    bound: list[Any] = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            bound.append(item)
            continue
        args = item if isinstance(item, tuple) else (item,)
        try:
            arguments = dict(signature.bind_partial(*args).arguments)
        except TypeError as err:
            raise TypeError(
                f"{name}[{index}] does not fit {getattr(function, '__name__', function)}{signature}: {err}"
            ) from err
        # Lithops wants a dict input to name every parameter: the defaults are filled in.
        for parameter in signature.parameters.values():
            if (
                parameter.name not in arguments
                and parameter.name not in (extra or {})
                and parameter.default is not inspect.Parameter.empty
                and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            ):
                arguments[parameter.name] = parameter.default
        bound.append(arguments)
    if extra:
        check_injected_not_given("extra_params", function, [extra], single=True)
    return bound


def check_lithops_binding(
    name: str, function: Callable[..., Any], items: list[Any], extra: Any, *, single: bool = False
) -> None:
    """Check, as Lithops' ``verify_args`` does when the job is submitted, that every input
    (with ``extra`` appended or merged, as ``format_data`` does) fits ``function``: so that
    a mismatch fails when the DAG is parsed, or before anything is submitted.

    :param single: ``items`` holds the one input of a ``call_async`` (named ``name``, not
        ``name[0]``).
    :raises TypeError: naming the input and the signature.
    """
    signature = user_signature(function)
    parameters = signature.parameters
    var_keyword = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    label = f"{getattr(function, '__name__', function)}{signature}"
    for index, item in enumerate(items):
        where = name if single else f"{name}[{index}]"
        if extra and isinstance(item, tuple) and not isinstance(extra, tuple):
            raise TypeError(f"{where} is a tuple: extra_params must then be positional (a list or tuple)")
        if extra and isinstance(item, dict) and not isinstance(extra, dict):
            raise TypeError(f"{where} is a dict: extra_params must then be keyword arguments (a dict)")
        if isinstance(item, dict):
            given = {**item, **(extra or {})}
            missing = [n for n in parameters if n not in given]
            if not var_keyword and missing:
                raise TypeError(
                    f"{where} names {sorted(given)}, but {label} also needs {missing} "
                    "(Lithops wants a dict input to name every parameter)"
                )
            continue
        args = (*item, *(extra or ())) if isinstance(item, tuple) else (item, *(extra or ()))
        try:
            signature.bind(*args)
        except TypeError as err:
            raise TypeError(f"{where} does not fit {label}: {err}") from err
