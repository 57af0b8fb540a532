"""PyWrenMapOperator: one serverless call per element of ``map_iterdata``."""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from pywren_deferrable.config import S3_STORAGE_BACKENDS, storage_backend_name
from pywren_deferrable.job import JobRef
from pywren_deferrable.operators.base import PyWrenBaseOperator
from pywren_deferrable.operators.validation import (
    check_extra_params,
    check_iterdata,
    check_optional_positive_int,
    check_payload_function,
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


# What users write for "the S3 storage of my Connection"; Lithops would read them as
# AWS S3 and IBM COS specifically (``s3`` -> ``aws_s3``, ``cos`` -> ``ibm_cos``).
GENERIC_URL_SCHEMES = ("s3", "cos")


def rewrite_object_url(url: str, storage_backend: str) -> str:
    """Point an ``s3://``/``cos://`` URL at the Connection's S3-compatible storage backend.

    :raises ValueError: when the URL names no bucket.
    """
    scheme, sep, path = url.partition("://")
    if not sep:
        return url
    if not path or path.startswith("/"):
        raise ValueError(f"map_iterdata: the object URL {url!r} names no bucket")
    if scheme in GENERIC_URL_SCHEMES and storage_backend in S3_STORAGE_BACKENDS:
        return f"{storage_backend}://{path}"
    return url


def rewrite_object_urls(iterdata: list[Any], storage_backend: str) -> list[Any]:
    """:func:`rewrite_object_url` for every ``obj`` input (a URL string or ``{"obj": url}``)."""
    rewritten: list[Any] = []
    for item in iterdata:
        if isinstance(item, str) and "://" in item:
            item = rewrite_object_url(item, storage_backend)
        elif isinstance(item, dict) and isinstance(item.get("obj"), str):
            item = {**item, "obj": rewrite_object_url(item["obj"], storage_backend)}
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
    :param map_iterdata: the inputs, one call each (a list, an XComArg such as
        ``upstream.output``, or a Jinja string rendering to a list). An element is
        passed as the first argument, a tuple as positional arguments, a dict as
        keyword arguments. ``["s3://bucket/prefix/"]`` maps over a bucket's objects
        (the function takes ``obj``); ``s3://`` and ``cos://`` mean the Connection's storage.
    :param iterdata_from_task: take the inputs from an upstream task's return value
        instead: a task id, or ``{"x": task_id}`` to pass each item as argument ``x``.
        (The seed's misspelling ``iterdata_form_task`` is accepted, with a warning.)
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
        map_iterdata: Any = None,
        iterdata_from_task: str | dict[str, str] | None = None,
        extra_params: dict[str, Any] | tuple[Any, ...] | None = None,
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
        self.iterdata_from_task = check_iterdata_from_task(iterdata_from_task)
        if self.iterdata_from_task is not None:
            if map_iterdata is not None:
                raise ValueError("set map_iterdata or iterdata_from_task, not both")
            self.map_iterdata = None
        elif map_iterdata is None:
            raise TypeError("map_iterdata is required (or iterdata_from_task)")
        else:
            self.map_iterdata = check_iterdata("map_iterdata", map_iterdata)
            if not is_deferred_value(self.map_iterdata):
                rewrite_object_urls(self.map_iterdata, "")  # a URL without a bucket fails here
        self.extra_params = check_extra_params("extra_params", extra_params)
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
        """The inputs: rendered ``map_iterdata`` or the upstream XCom, checked again."""
        source = self.iterdata_from_task
        if isinstance(source, str):
            return cast(
                list[Any],
                check_iterdata(
                    f"the return value of task {source!r}", context["ti"].xcom_pull(task_ids=source)
                ),
            )
        if isinstance(source, dict):
            ((name, task_id),) = source.items()
            values = check_iterdata(
                f"the return value of task {task_id!r}", context["ti"].xcom_pull(task_ids=task_id)
            )
            return [{name: value} for value in values]
        if is_deferred_value(self.map_iterdata):
            raise TypeError(f"map_iterdata was not rendered: {self.map_iterdata!r:.80}")
        return cast(list[Any], check_iterdata("map_iterdata", self.map_iterdata))

    def map_options(self) -> dict[str, Any]:
        """Lithops ``map()`` keyword arguments from the seed's parameter names."""
        options = self.common_options()
        options["runtime_memory"] = self.runtime_memory
        options["obj_chunk_size"] = self.chunk_size
        options["obj_chunk_number"] = self.chunk_n
        return options

    def job_iterdata(self, context: Any, config: dict[str, Any]) -> tuple[list[Any], Any]:
        """The iterdata and extra_args handed to Lithops."""
        iterdata = rewrite_object_urls(self.resolved_iterdata(context), storage_backend_name(config))
        return bind_iterdata(self.map_function, iterdata, self.extra_params)

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
