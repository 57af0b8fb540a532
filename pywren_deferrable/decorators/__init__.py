"""TaskFlow decorators: write plain Python functions, run them on Lithops.

Registered as Airflow task decorators (``@task.pywren_map``, ``@task.pywren_call_async``,
``@task.pywren_map_reduce``) and also importable as ``pywren_task.map`` etc.::

    from pywren_deferrable.decorators import pywren_task

    @pywren_task.map(extra_params={"y": 1})
    def add(x, y):
        return x + y

    add([1, 2, 3])              # a deferrable map task returning [2, 3, 4]

The decorated function is the payload that runs on Lithops (the same rules apply as for
``map_function``: no Airflow objects inside it). Calling it in a DAG creates the task:
for ``map``/``map_reduce`` the first argument is the iterdata and keyword arguments are
added to every call; for ``call_async`` the arguments are the call's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk.bases.decorator import DecoratedOperator, TaskDecorator, task_decorator_factory

from pywren_deferrable.iterdata import user_signature
from pywren_deferrable.operators.call_async import PyWrenCallAsyncOperator
from pywren_deferrable.operators.map import PyWrenMapOperator
from pywren_deferrable.operators.map_reduce import PyWrenMapReduceOperator


def _as_airflow_sees_it(function: Callable[..., Any], *, mapped: bool = False) -> Callable[..., Any]:
    """``function`` with the signature its callers fill in: without the parameters Lithops
    injects (``id``, ``storage``...). Airflow binds the decorated call's arguments to the
    ``python_callable``'s signature, and would otherwise ask for them. The payload that
    runs on Lithops stays ``function`` itself (whose ``id`` Lithops must still see).

    :param mapped: a map's call gives the iterdata and, maybe, the extra arguments (which
        the decorator's ``extra_params`` may give instead): only the first is required
        here; the operator checks every call's inputs against ``function`` itself.
    """
    signature = user_signature(function)
    if mapped:
        parameters = list(signature.parameters.values())
        signature = signature.replace(
            parameters=parameters[:1]
            + [
                p.replace(default=None) if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) else p
                for p in parameters[1:]
            ]
        )

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    call.__signature__ = signature  # type: ignore[attr-defined]
    return call


def _iterdata_and_extra(op_args: Sequence[Any], op_kwargs: dict[str, Any], name: str) -> tuple[Any, Any]:
    if len(op_args) != 1:
        raise TypeError(
            f"call a @{name} function with the iterdata as its only positional argument, "
            "e.g. add([1, 2, 3], y=1) (keyword arguments are added to every call)"
        )
    return op_args[0], dict(op_kwargs) or None


class _MapDecoratedOperator(DecoratedOperator):
    """Turns the call of a decorated map function into the map operator's arguments.
    (A BaseOperator subclass, not a plain mixin: Airflow wraps every operator __init__.)"""

    decorator_name = "pywren_task.map"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Any = None,
        op_kwargs: Any = None,
        **kwargs: Any,
    ):
        iterdata, extra = _iterdata_and_extra(list(op_args or []), dict(op_kwargs or {}), self.decorator_name)
        kwargs.setdefault("extra_params", extra)
        super().__init__(
            python_callable=_as_airflow_sees_it(python_callable, mapped=True),
            op_args=op_args,
            op_kwargs=op_kwargs,
            map_function=python_callable,
            map_iterdata=iterdata,
            **kwargs,
        )


class _PyWrenMapDecoratedOperator(_MapDecoratedOperator, PyWrenMapOperator):
    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *PyWrenMapOperator.template_fields)
    custom_operator_name = "@task.pywren_map"


class _PyWrenMapReduceDecoratedOperator(_MapDecoratedOperator, PyWrenMapReduceOperator):
    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *PyWrenMapReduceOperator.template_fields,
    )
    custom_operator_name = "@task.pywren_map_reduce"
    decorator_name = "pywren_task.map_reduce"


class _PyWrenCallAsyncDecoratedOperator(DecoratedOperator, PyWrenCallAsyncOperator):
    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *PyWrenCallAsyncOperator.template_fields,
    )
    custom_operator_name = "@task.pywren_call_async"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Any = None,
        op_kwargs: Any = None,
        **kwargs: Any,
    ):
        bound = user_signature(python_callable).bind_partial(*(op_args or []), **(op_kwargs or {}))
        super().__init__(
            python_callable=_as_airflow_sees_it(python_callable),
            op_args=op_args,
            op_kwargs=op_kwargs,
            func=python_callable,
            data=dict(bound.arguments),
            **kwargs,
        )


def pywren_map_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """``@task.pywren_map``: the function is mapped over its first argument on Lithops."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=_PyWrenMapDecoratedOperator, **kwargs
    )


def pywren_map_reduce_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """``@task.pywren_map_reduce(reduce_function=...)``: map on Lithops, then reduce."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=_PyWrenMapReduceDecoratedOperator, **kwargs
    )


def pywren_call_async_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """``@task.pywren_call_async``: one call of the function, with the task's arguments, on Lithops."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=_PyWrenCallAsyncDecoratedOperator, **kwargs
    )


class pywren_task:
    """``pywren_task.map``, ``pywren_task.map_reduce``, ``pywren_task.call_async``."""

    map = staticmethod(pywren_map_task)
    map_reduce = staticmethod(pywren_map_reduce_task)
    call_async = staticmethod(pywren_call_async_task)
