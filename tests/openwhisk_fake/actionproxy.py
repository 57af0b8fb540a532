"""What an OpenWhisk Python container does with one activation: load the action's
``__main__.py`` from the unpacked code zip and call its ``main(params)``.

Run by the stand-in (``python -I actionproxy.py <workdir>``) with the activation's params
on stdin; writes ``{"ok": ..., "result"|"error": ...}`` to ``<workdir>/result.json``.
Isolated mode (``-I``) keeps the test suite's ``PYTHONPATH`` out: like a container, the
activation sees the runtime's installed packages and the action's zip, nothing else, so
Lithops must ship the payload functions' modules itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback


def run(workdir: str) -> dict[str, object]:
    action_dir = os.path.join(workdir, "action")
    params = json.load(sys.stdin)
    os.chdir(action_dir)
    sys.path.insert(0, action_dir)  # the zip's lithops/ wins over the installed one
    try:
        # OpenWhisk's Python runtime imports the zip's __main__.py under another name.
        spec = importlib.util.spec_from_file_location("main__", os.path.join(action_dir, "__main__.py"))
        if spec is None or spec.loader is None:
            return {"ok": False, "error": "the action's zip has no __main__.py"}
        module = importlib.util.module_from_spec(spec)
        sys.modules["main__"] = module
        spec.loader.exec_module(module)
        result = module.main(params)
    except BaseException as err:  # an action that raises is an application error
        traceback.print_exc()
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    if not isinstance(result, dict):
        return {"ok": False, "error": f"the action returned {type(result).__name__}, not a dictionary"}
    return {"ok": True, "result": result}


if __name__ == "__main__":
    outcome = run(sys.argv[1])
    sys.stdout.flush()
    with open(os.path.join(sys.argv[1], "result.json"), "w", encoding="utf-8") as handle:
        json.dump(outcome, handle, default=str)
