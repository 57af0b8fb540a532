"""PyWrenMapOperator: one serverless call per element of ``map_iterdata``."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pywren_deferrable.config import S3_STORAGE_BACKENDS, storage_backend_name
from pywren_deferrable.iterdata import (
    GENERIC_URL_SCHEMES,
    OBJECT_PARAMETER,
    as_call_list,
    bind_to_user_signature,
    check_injected_not_given,
    check_lithops_binding,
    check_object_url,
    is_lazy,
    is_no_iterdata,
    object_positions,
)
from pywren_deferrable.job import JobRef
from pywren_deferrable.operators.base import PyWrenBaseOperator
from pywren_deferrable.operators.validation import (
    check_extra_params,
    check_iterdata,
    check_optional_positive_int,
    check_payload_function,
    has_deferred_parts,
    is_deferred_value,
)
from pywren_deferrable.retries import check_retryable_map, processes_objects
from pywren_deferrable.submit import JobSpec


def bind_iterdata(
    function: Callable[..., Any], iterdata: list[Any], extra_params: dict[str, Any] | tuple[Any, ...] | None
) -> tuple[list[Any], dict[str, Any] | tuple[Any, ...] | None]:
    """Make ``iterdata`` and ``extra_params`` fit together the way the seed documented.

    The seed's ``map_iterdata=[1, 2, 3], extra_params={'y': 1}`` calls ``f(1, y=1)``...
    Lithops 3 would append the dict's *keys* as positional arguments instead, so
    single values and tuples are bound to the function's parameters here (leaving out
    those Lithops injects, as Lithops does), giving one kwargs dict per call, which
    Lithops merges with ``extra_params``. Inputs are copied: Lithops updates dict
    inputs in place.
    """
    items = copy.deepcopy(list(iterdata))
    check_injected_not_given("map_iterdata", function, items)
    if not isinstance(extra_params, dict) or not extra_params:
        return items, extra_params
    return bind_to_user_signature("map_iterdata", function, items, extra_params), extra_params


def rewrite_object_url(url: str, storage_backend: str) -> str:
    """Point an ``s3://``/``cos://`` URL at the Connection's S3-compatible storage backend.

    :raises ValueError: when the URL names no bucket.
    """
    check_object_url("map_iterdata", url)
    scheme, sep, path = url.partition("://")
    if sep and scheme in GENERIC_URL_SCHEMES and storage_backend in S3_STORAGE_BACKENDS:
        return f"{storage_backend}://{path}"
    return url


def rewrite_object_urls(function: Callable[..., Any], iterdata: list[Any], storage_backend: str) -> list[Any]:
    """:func:`rewrite_object_url` for every ``obj`` input of an object-processing function
    (a bare URL, the ``obj`` position of a tuple, or ``{"obj": url}``); other functions'
    inputs are data, left as they are."""
    position, bare_is_obj = object_positions(function)
    if position is None:
        return list(iterdata)

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            return rewrite_object_url(value, storage_backend)
        if any(hasattr(value, a) for a in ("bucket", "url", "path")):  # a Lithops CloudObject
            return value
        raise TypeError(
            f"map_iterdata: {getattr(function, '__name__', function)} takes obj, so its obj inputs are "
            f"storage URLs ('cos://bucket/prefix/', 's3://bucket/key'), http(s) URLs or paths; got {value!r:.60}"
        )

    rewritten: list[Any] = []
    for item in iterdata:
        if isinstance(item, dict):
            if OBJECT_PARAMETER in item:
                item = {**item, OBJECT_PARAMETER: rewrite(item[OBJECT_PARAMETER])}
        elif isinstance(item, tuple):
            if position < len(item):
                item = (*item[:position], rewrite(item[position]), *item[position + 1 :])
        elif bare_is_obj:
            item = rewrite(item)
        rewritten.append(item)
    return rewritten


def check_iterdata_from_task(value: Any) -> str | dict[str, str] | None:
    """A task id (its XCom is the iterdata) or ``{argument: task_id}`` (one call per XCom item)."""
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        ((name, task_id),) = value.items()
        if isinstance(name, str) and isinstance(task_id, str) and task_id:
            return {name: task_id}
    raise TypeError(
        "iterdata_from_task must be a task id (str) or a one-entry dict {argument name: task id}, "
        f"got {value!r:.80}"
    )


class PyWrenMapOperator(PyWrenBaseOperator):
    """Run ``map_function`` once per element of ``map_iterdata`` on serverless functions.

    Returns the list of results, in input order.

    :param map_function: the function to call.
    :param map_iterdata: the inputs, as Lithops takes them: a list (one call per
        element), a ``range``/``set``/generator (read when the task runs), a storage
        URL string (``'cos://bucket/prefix/'``, ``'s3://bucket/key'``, the storage
        backend's own scheme such as ``'minio://...'``, or an ``https://`` object URL)
        for a function taking ``obj``, one call per object or chunk; an XComArg such as
        ``upstream.output``, or a Jinja string. An element is passed as the first
        argument, a tuple as positional arguments, a dict as keyword arguments (a bare
        tuple is one call, as in Lithops). ``s3://`` and ``cos://`` mean the
        Connection's storage.
    :param iterdata_from_task: take the inputs from an upstream task's return value
        instead (``map_iterdata`` then stays ``None`` or ``[]``): a task id, or
        ``{"x": task_id}`` to pass each item as argument ``x``.
        (The seed's misspelling ``iterdata_form_task`` is accepted, with a warning.)
    :param extra_params: extra keyword arguments (dict) or positional arguments
        (list or tuple) given to every call.
    :param extra_args: the same as ``extra_params``, under Lithops' name (and the
        successor plugin's); set one of them.
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
        map_iterdata: Any = None,
        iterdata_from_task: str | dict[str, str] | None = None,
        extra_params: dict[str, Any] | tuple[Any, ...] | list[Any] | None = None,
        extra_args: dict[str, Any] | tuple[Any, ...] | list[Any] | None = None,
        chunk_size: int | None = None,
        chunk_n: int | None = None,
        remote_invocation: bool = False,
        invoke_pool_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        if "iterdata_form_task" in kwargs:
            warnings.warn(
                "iterdata_form_task is the seed plugin's misspelling; use iterdata_from_task",
                DeprecationWarning,
                stacklevel=2,
            )
            misspelled = kwargs.pop("iterdata_form_task")
            if iterdata_from_task is not None:
                raise ValueError("set iterdata_from_task or iterdata_form_task (its old spelling), not both")
            iterdata_from_task = misspelled
        super().__init__(**kwargs)
        self.map_function = check_payload_function("map_function", map_function)
        if extra_args is not None:
            if extra_params is not None:
                raise ValueError(
                    "extra_args is another name of extra_params (Lithops' and the successor "
                    "plugin's): set one of them, not both"
                )
            extra_params = extra_args
        self.extra_params = check_extra_params("extra_params", extra_params)
        self.iterdata_from_task = check_iterdata_from_task(iterdata_from_task)
        if self.iterdata_from_task is not None:
            if not is_no_iterdata(map_iterdata):
                raise ValueError(
                    "map_iterdata and iterdata_from_task both give the inputs: leave map_iterdata "
                    f"empty ([] or None) when the inputs come from a task, got {map_iterdata!r:.60}"
                )
            self.map_iterdata = None
        elif map_iterdata is None:
            raise TypeError("map_iterdata is required (or iterdata_from_task)")
        else:
            self.map_iterdata = check_iterdata("map_iterdata", map_iterdata)
            if not is_deferred_value(self.map_iterdata) and not is_lazy(self.map_iterdata):
                # What Lithops would refuse at submit is refused here, at parse time.
                items = as_call_list("map_iterdata", self.map_iterdata)
                if not has_deferred_parts(items):
                    self.calls_for(items, "")
        self.chunk_size = check_optional_positive_int("chunk_size", chunk_size)
        self.chunk_n = check_optional_positive_int("chunk_n", chunk_n)
        if self.chunk_size is not None and self.chunk_n is not None:
            raise ValueError("chunk_size and chunk_n are exclusive: set one of them, not both")
        check_retryable_map(self.call_retries, self.map_function, bool(self.chunk_size or self.chunk_n))
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
        """The inputs as Lithops would list them: rendered ``map_iterdata`` (a generator
        read now) or the upstream XCom, checked again."""
        source = self.iterdata_from_task
        if isinstance(source, str):
            return as_call_list(
                f"the return value of task {source!r}", context["ti"].xcom_pull(task_ids=source)
            )
        if isinstance(source, dict):
            ((name, task_id),) = source.items()
            values = as_call_list(
                f"the return value of task {task_id!r}", context["ti"].xcom_pull(task_ids=task_id)
            )
            return [{name: value} for value in values]
        if is_deferred_value(self.map_iterdata):
            raise TypeError(f"map_iterdata was not rendered: {self.map_iterdata!r:.80}")
        return as_call_list("map_iterdata", self.map_iterdata)

    def input_elements(self, context: Any) -> list[Any] | None:
        try:
            return self.resolved_iterdata(context)
        except Exception as err:  # only a failure message needs them: never mask it
            self.log.debug("inputs not readable for the failure message: %s", err)
            return None

    def map_options(self) -> dict[str, Any]:
        """Lithops ``map()`` keyword arguments from the seed's parameter names."""
        options = self.common_options()
        options["runtime_memory"] = self.runtime_memory
        options["obj_chunk_size"] = self.chunk_size
        options["obj_chunk_number"] = self.chunk_n
        return options

    def calls_for(self, items: list[Any], storage_backend: str) -> tuple[list[Any], Any]:
        """The iterdata and extra_args handed to Lithops for the call inputs ``items``."""
        iterdata = rewrite_object_urls(self.map_function, items, storage_backend)
        if is_deferred_value(self.extra_params):
            return iterdata, self.extra_params  # checked once rendered
        iterdata, extra = bind_iterdata(self.map_function, iterdata, self.extra_params)
        check_lithops_binding("map_iterdata", self.map_function, iterdata, extra)
        return iterdata, extra

    def job_iterdata(self, context: Any, config: dict[str, Any]) -> tuple[list[Any], Any]:
        """The iterdata and extra_args handed to Lithops."""
        if is_deferred_value(self.extra_params):
            raise TypeError(f"extra_params was not rendered: {self.extra_params!r:.80}")
        return self.calls_for(self.resolved_iterdata(context), storage_backend_name(config))

    def first_retry_state(self, spec: JobSpec, job: JobRef) -> dict[str, Any]:
        # Object inputs: Lithops decides which calls run which input (see retries.py).
        if processes_objects(self.map_function) or self.chunk_size or self.chunk_n:
            return {}
        return super().first_retry_state(spec, job)

    def build_spec(self, context: Any, config: dict[str, Any]) -> JobSpec:
        iterdata, extra = self.job_iterdata(context, config)
        options = self.map_options()
        options["extra_args"] = extra
        return JobSpec(
            call_type="map", function=self.map_function, iterdata=iterdata, config=config, options=options
        )

    def payload_functions(self) -> list[Callable[..., Any]]:
        return [self.map_function]


IbmPyWrenMapOperator = PyWrenMapOperator
"""The seed plugin's name, kept so that seed DAGs work with an import change only."""
