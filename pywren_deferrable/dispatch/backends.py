"""The backends whose calls the trigger can invoke: each one's invoker (trigger side),
``invoke_target`` (worker side, from Lithops' backend object) and, where a backend's own
settings can rule dispatch out, ``why_not``. Adding a backend is a module with those and a
line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pywren_deferrable.dispatch import aws_lambda, azure_functions, openwhisk
from pywren_deferrable.dispatch.errors import Invoker

InvokerFactory = Callable[[dict[str, Any], dict[str, Any]], Invoker]
TargetFunction = Callable[[Any, str, dict[str, Any], dict[str, Any]], dict[str, Any]]

INVOKERS: dict[str, InvokerFactory] = {
    "openwhisk": openwhisk.OpenWhiskInvoker,
    "ibm_cf": openwhisk.OpenWhiskInvoker,
    "aws_lambda": aws_lambda.AwsLambdaInvoker,
    "azure_functions": azure_functions.AzureQueueInvoker,
}
TARGETS: dict[str, TargetFunction] = {
    "openwhisk": openwhisk.invoke_target,
    "ibm_cf": openwhisk.invoke_target,
    "aws_lambda": aws_lambda.invoke_target,
    "azure_functions": azure_functions.invoke_target,
}
# Why a job of the backend cannot be dispatched, from its Lithops config (None: it can).
REFUSALS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "azure_functions": azure_functions.why_not,
}
DISPATCH_BACKENDS = frozenset(INVOKERS)
