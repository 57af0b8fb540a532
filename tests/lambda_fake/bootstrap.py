"""What a Lambda Python runtime does with one invocation: import the function's handler
from its unpacked code zip (``LAMBDA_TASK_ROOT``) and call ``handler(event, context)``.

Run by the stand-in (``python -I bootstrap.py <workdir> <handler>``) with the event on
stdin; writes ``{"ok": true, "result": ...}`` or ``{"ok": false, "errorType", "errorMessage",
"stackTrace"}`` (Lambda's error shape) to ``<workdir>/result.json``. Isolated mode keeps the
test suite's ``PYTHONPATH`` out: the invocation sees the runtime's installed packages (the
layer's stand-in) and the function's zip, nothing else.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class LambdaContext:
    """The attributes of the Python runtime's context object that handlers read."""

    def __init__(self, request_id: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.invoked_function_arn = os.environ.get("LAMBDA_FAKE_FUNCTION_ARN", "")
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = request_id
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.time()) * 1000), 0)


def run(workdir: str, handler: str) -> dict[str, Any]:
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    event = json.load(sys.stdin)
    os.chdir(task_root)
    sys.path.insert(0, task_root)  # the zip's lithops/ wins over the installed one
    try:
        module_name, _, function_name = handler.rpartition(".")
        function = getattr(importlib.import_module(module_name), function_name)
    except Exception as err:  # Runtime.ImportModuleError
        return {"ok": False, "errorType": "Runtime.ImportModuleError", "errorMessage": str(err)}
    # Init is over: the function's timeout runs from here.
    with open(os.path.join(workdir, "run_started"), "w", encoding="utf-8"):
        pass
    timeout = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))
    context = LambdaContext(os.environ["LAMBDA_FAKE_REQUEST_ID"], time.time() + timeout)
    try:
        result = function(event, context)
    except Exception as err:
        traceback.print_exc()
        return {
            "ok": False,
            "errorType": type(err).__name__,
            "errorMessage": str(err),
            "stackTrace": traceback.format_tb(err.__traceback__),
        }
    return {"ok": True, "result": result}


if __name__ == "__main__":
    outcome = run(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    with open(os.path.join(sys.argv[1], "result.json"), "w", encoding="utf-8") as handle:
        json.dump(outcome, handle, default=str)
