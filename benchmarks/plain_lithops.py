"""The baseline of the end-to-end benchmark: the same map as a plain Lithops script.

``FunctionExecutor(config).map(...)`` then ``get_result()``, with the config the
operator would use (same Connection: localhost compute, the same S3 endpoint, Lithops'
cleaner off as in the operator). No Airflow here.

``python -m benchmarks.plain_lithops SPEC OUT`` runs it in a fresh interpreter.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def run_plain(spec: dict[str, Any]) -> list[Any]:
    import lithops

    from benchmarks import payloads
    from pywren_deferrable.config import build_lithops_config

    conn = json.loads(spec["env"]["AIRFLOW_CONN_LITHOPS_DEFAULT"])
    config = build_lithops_config(
        conn["extra"], login=conn["login"], password=conn["password"], overrides=spec.get("executor_config")
    )
    fexec = lithops.FunctionExecutor(config=config)
    futures = fexec.map(getattr(payloads, spec["function"]), spec["iterdata"])
    return list(fexec.get_result(futures, show_progressbar=False))


def main(spec_path: str, out_path: str) -> None:
    started = time.time()
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    out: dict[str, Any] = {"main_start": started}
    try:
        out["results"] = run_plain(spec)
    except Exception as err:
        out["error"] = f"{type(err).__name__}: {err}"
    out["main_end"] = time.time()
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
