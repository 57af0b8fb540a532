"""The backends whose calls the trigger can invoke: each one's invoker (trigger side) and
``invoke_target`` (worker side, from Lithops' backend object). Adding a backend is a module
with those two and a line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pywren_deferrable.dispatch import aws_lambda, openwhisk
from pywren_deferrable.dispatch.errors import Invoker

InvokerFactory = Callable[[dict[str, Any], dict[str, Any]], Invoker]
TargetFunction = Callable[[Any, str, dict[str, Any], dict[str, Any]], dict[str, Any]]

INVOKERS: dict[str, InvokerFactory] = {
    "openwhisk": openwhisk.OpenWhiskInvoker,
    "ibm_cf": openwhisk.OpenWhiskInvoker,
    "aws_lambda": aws_lambda.AwsLambdaInvoker,
}
TARGETS: dict[str, TargetFunction] = {
    "openwhisk": openwhisk.invoke_target,
    "ibm_cf": openwhisk.invoke_target,
    "aws_lambda": aws_lambda.invoke_target,
}
DISPATCH_BACKENDS = frozenset(INVOKERS)
