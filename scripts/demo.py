"""The demo: the seed's map example end to end on the embedded default, no cloud account.

Starts a real S3 endpoint on 127.0.0.1 (moto's server), creates the bucket and the
``lithops_default`` Connection, migrates a throw-away Airflow metadata DB, runs
``example_pywren_map`` with ``dag.test()`` (the task submits, defers, the trigger polls
the bucket, the task resumes) on Lithops' localhost compute, and prints the result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "example_dags"


def main() -> int:
    from pywren_deferrable.embedded import LocalS3Server, embedded_connection_env

    started = time.monotonic()
    home = tempfile.mkdtemp(prefix="pywren-demo-airflow-")
    server = LocalS3Server().start()
    try:
        bucket = server.create_bucket("pywren-demo")
        os.environ.update(
            AIRFLOW_HOME=home,
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
            AIRFLOW_CONN_LITHOPS_DEFAULT=embedded_connection_env(server.endpoint, bucket),
        )
        print(f"S3 endpoint {server.endpoint}, bucket {bucket}, AIRFLOW_HOME {home}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL
        )
        from pywren_deferrable.embedded import run_dag_test

        state, results = run_dag_test(str(DAGS), "example_pywren_map")
    finally:
        server.stop()
    print(f"\nDAG run state: {state} ({time.monotonic() - started:.1f}s)")
    print(f"map_task returned: {results.get('map_task')}")
    return 0 if state == "success" and results.get("map_task") == [2, 3, 4] else 1


if __name__ == "__main__":
    sys.exit(main())
