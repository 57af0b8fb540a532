"""What the Azure Functions Python worker does with one queue-triggered invocation: call
the function's entry point (Lithops' ``main_queue(msgIn, msgOut)``) with the message, and
hand back what it set on its output binding.

Run by the stand-in's host (``python -I worker.py <workdir>``) with ``<workdir>/input.json``
(the message id, its decoded body, its dequeue count); writes ``<workdir>/result.json``
(``{"ok": ..., "out"|"error": ...}``). Isolated mode (``-I``) keeps the test suite's
``PYTHONPATH`` out: like a function app, the invocation sees the installed packages
(Lithops, ``azure-functions``), not the tests' modules, so Lithops must ship the payload
functions' modules itself.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any


def run(workdir: str) -> dict[str, Any]:
    with open(os.path.join(workdir, "input.json"), encoding="utf-8") as handle:
        message = json.load(handle)
    try:
        import azure.functions as func
        from lithops.serverless.backends.azure_functions import entry_point

        class Out(func.Out):  # type: ignore[type-arg]
            """The output binding (the function's out-result queue), set at most once."""

            def __init__(self) -> None:
                self.value: Any = None

            def set(self, val: Any) -> None:
                self.value = val

            def get(self) -> Any:
                return self.value

        msg_in = func.QueueMessage(id=message["id"], body=message["body"].encode())
        msg_out = Out()
        # Init is over (imports done): the function's timeout runs from here.
        with open(os.path.join(workdir, "run_started"), "w", encoding="utf-8"):
            pass
        entry_point.main_queue(msg_in, msg_out)
    except BaseException as err:  # a function that raises is a failed invocation: retried
        traceback.print_exc()
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    out = msg_out.get()
    return {"ok": True, "out": out if out is None or isinstance(out, str) else str(out)}


if __name__ == "__main__":
    outcome = run(sys.argv[1])
    sys.stdout.flush()
    with open(os.path.join(sys.argv[1], "result.json"), "w", encoding="utf-8") as handle:
        json.dump(outcome, handle, default=str)
