"""PyWrenCallAsyncOperator: one serverless call of ``func(**data)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pywren_deferrable.iterdata import check_injected_not_given, check_lithops_binding
from pywren_deferrable.operators.base import PyWrenBaseOperator
from pywren_deferrable.operators.validation import (
    check_payload_function,
    has_deferred_parts,
    is_deferred_value,
)
from pywren_deferrable.submit import JobSpec


def check_data_from_task(value: Any) -> dict[str, str] | None:
    """``data_from_task`` maps argument names to upstream task ids (both str)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(
            f"data_from_task must be a dict of argument name to task id, got {type(value).__name__}"
        )
    for key, task_id in value.items():
        if not isinstance(key, str) or not isinstance(task_id, str) or not task_id:
            raise TypeError(
                f"data_from_task must map argument names (str) to task ids (str); {key!r}: {task_id!r}"
            )
    return dict(value)


class PyWrenCallAsyncOperator(PyWrenBaseOperator):
    """Run ``func`` once, as a serverless function; return its result.

    :param func: the function to call.
    :param data: its input, as Lithops' ``call_async`` takes it: a dict of keyword
        arguments, a tuple of positional arguments, or any other value as the first
        argument (so a list is *one* argument, as in Lithops). The parameters Lithops
        injects (``id``, ``storage``, ``ibm_cos``, ``rabbitmq``) are left out.
    :param data_from_task: argument names mapped to upstream task ids whose return
        values (XCom) are passed as those arguments, e.g. ``{"y": "add_task_1"}``.
    Every :class:`PyWrenBaseOperator` parameter applies as well.
    """

    template_fields: Sequence[str] = (*PyWrenBaseOperator.template_fields, "data")
    call_type = "call_async"

    def __init__(
        self,
        *,
        func: Callable[..., Any],
        data: Any = None,
        data_from_task: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.func = check_payload_function("func", func)
        self.data = data if data is not None else {}
        self.data_from_task = check_data_from_task(data_from_task)
        if self.data_from_task and not isinstance(self.data, dict):
            raise TypeError("data_from_task needs data to be a dict of keyword arguments")
        if not is_deferred_value(self.data) and not has_deferred_parts([self.data]):
            # Lithops' own binding check, at parse time; data_from_task fills its names later.
            given = (
                {**self.data, **dict.fromkeys(self.data_from_task or {})}
                if isinstance(self.data, dict)
                else self.data
            )
            check_injected_not_given("data", self.func, [given], single=True)
            check_lithops_binding("data", self.func, [given], None, single=True)

    def call_data(self, context: Any) -> Any:
        """``data`` with the upstream values of ``data_from_task`` filled in (a copy)."""
        if is_deferred_value(self.data):
            raise TypeError(f"data was not rendered: {self.data!r:.80}")
        if isinstance(self.data, dict):
            data: Any = dict(self.data)
            for name, task_id in (self.data_from_task or {}).items():
                data[name] = context["ti"].xcom_pull(task_ids=task_id)
            return data
        return self.data

    def build_spec(self, context: Any, config: dict[str, Any]) -> JobSpec:
        options = self.common_options()
        options["runtime_memory"] = self.runtime_memory
        data = self.call_data(context)
        check_injected_not_given("data", self.func, [data], single=True)
        check_lithops_binding("data", self.func, [data], None, single=True)
        return JobSpec(
            call_type="call_async",
            function=self.func,
            iterdata=data,
            config=config,
            options=options,
        )

    def shape_results(self, results: Any) -> Any:
        return results[0] if isinstance(results, list) and len(results) == 1 else results

    def payload_functions(self) -> list[Callable[..., Any]]:
        return [self.func]


IbmPyWrenCallAsyncOperator = PyWrenCallAsyncOperator
"""The seed plugin's name, kept so that seed DAGs work with an import change only."""
