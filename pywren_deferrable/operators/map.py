"""PyWrenMapOperator: one serverless call per element of ``map_iterdata``."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from pywren_deferrable.operators.base import PyWrenBaseOperator
from pywren_deferrable.operators.validation import (
    check_callable,
    check_extra_params,
    check_iterdata,
    check_optional_positive_int,
    is_deferred_value,
)
from pywren_deferrable.submit import JobSpec


def bind_iterdata(
    function: Callable[..., Any], iterdata: list[Any], extra_params: dict[str, Any] | tuple[Any, ...] | None
) -> tuple[list[Any], dict[str, Any] | tuple[Any, ...] | None]:
    """Make ``iterdata`` and ``extra_params`` fit together the way the seed documented.

    The seed's ``map_iterdata=[1, 2, 3], extra_params={'y': 1}`` calls ``f(1, y=1)``...
    Lithops 3 would append the dict's *keys* as positional arguments instead, so
    single values and tuples are bound to the function's parameters here, giving one
    kwargs dict per call, which Lithops merges with ``extra_params``. Inputs are copied:
    Lithops updates dict inputs in place.
    """
    items = copy.deepcopy(list(iterdata))
    if not isinstance(extra_params, dict) or not extra_params:
        return items, extra_params
    signature = inspect.signature(function)
    bound = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            bound.append(item)
            continue
        args = item if isinstance(item, tuple) else (item,)
        try:
            bound.append(dict(signature.bind_partial(*args).arguments))
        except TypeError as err:
            raise TypeError(
                f"map_iterdata[{index}] does not fit {function.__name__}{signature}: {err}"
            ) from err
    return bound, extra_params


class PyWrenMapOperator(PyWrenBaseOperator):
    """Run ``map_function`` once per element of ``map_iterdata`` on serverless functions.

    Returns the list of results, in input order.

    :param map_function: the function to call.
    :param map_iterdata: the inputs, one call each (a list, an XComArg such as
        ``upstream.output``, or a Jinja string rendering to a list). An element is
        passed as the first argument, a tuple as positional arguments, a dict as
        keyword arguments. ``["s3://bucket/prefix/"]`` maps over a bucket's objects
        (the function takes ``obj``).
    :param extra_params: extra keyword arguments (dict) or positional arguments
        (tuple) given to every call.
    :param chunk_size: split each storage object into chunks of this many bytes,
        one call per chunk.
    :param chunk_n: split each storage object into this many chunks.
    :param remote_invocation: let one function invoke all the others (Lithops'
        ``remote_invoker``): the task defers as soon as that one call is accepted.
    :param invoke_pool_threads: threads used to invoke the functions.
    Every :class:`PyWrenBaseOperator` parameter applies as well.
    """

    template_fields: Sequence[str] = (
        *PyWrenBaseOperator.template_fields,
        "map_iterdata",
        "extra_params",
    )
    call_type = "map"

    def __init__(
        self,
        *,
        map_function: Callable[..., Any],
        map_iterdata: Any,
        extra_params: dict[str, Any] | tuple[Any, ...] | None = None,
        chunk_size: int | None = None,
        chunk_n: int | None = None,
        remote_invocation: bool = False,
        invoke_pool_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.map_function = check_callable("map_function", map_function)
        self.map_iterdata = check_iterdata("map_iterdata", map_iterdata)
        self.extra_params = check_extra_params("extra_params", extra_params)
        self.chunk_size = check_optional_positive_int("chunk_size", chunk_size)
        self.chunk_n = check_optional_positive_int("chunk_n", chunk_n)
        if self.chunk_size is not None and self.chunk_n is not None:
            raise ValueError("chunk_size and chunk_n are exclusive: set one of them, not both")
        self.remote_invocation = bool(remote_invocation)
        self.invoke_pool_threads = check_optional_positive_int("invoke_pool_threads", invoke_pool_threads)

    def executor_overrides(self) -> dict[str, Any]:
        overrides = super().executor_overrides()
        # Flat keys land in the compute backend's section (see config.normalize_overrides).
        if self.remote_invocation:
            overrides["remote_invoker"] = True
        if self.invoke_pool_threads is not None:
            overrides["invoke_pool_threads"] = self.invoke_pool_threads
        return overrides

    def resolved_iterdata(self, context: Any) -> list[Any]:
        """``map_iterdata`` after Airflow rendered it, checked again."""
        if is_deferred_value(self.map_iterdata):
            raise TypeError(f"map_iterdata was not rendered: {self.map_iterdata!r:.80}")
        return check_iterdata("map_iterdata", self.map_iterdata)

    def map_options(self) -> dict[str, Any]:
        """Lithops ``map()`` keyword arguments from the seed's parameter names."""
        options = self.common_options()
        options["runtime_memory"] = self.runtime_memory
        options["obj_chunk_size"] = self.chunk_size
        options["obj_chunk_number"] = self.chunk_n
        return options

    def build_spec(self, context: Any, config: dict[str, Any]) -> JobSpec:
        iterdata, extra = bind_iterdata(self.map_function, self.resolved_iterdata(context), self.extra_params)
        options = self.map_options()
        options["extra_args"] = extra
        return JobSpec(
            call_type="map", function=self.map_function, iterdata=iterdata, config=config, options=options
        )
