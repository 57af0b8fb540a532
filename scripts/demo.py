"""The demo: the seed's map example end to end on the embedded default, no cloud account.

Starts a real S3 endpoint on 127.0.0.1 (moto's server), creates the bucket and the
``lithops_default`` Connection, migrates a throw-away Airflow metadata DB, runs
``example_pywren_map`` with ``dag.test()`` (the task submits, defers, the trigger polls
the bucket, the task resumes) on Lithops' localhost compute, and prints the result.

Your own DAG runs the same way, on the same embedded default (its tasks use the
``lithops_default`` Connection; payload functions in the DAG file or importable from it)::

    .venv/bin/python scripts/demo.py --dags-folder ~/my_dags --dag-id my_dag

Objects the DAG maps over can be uploaded first with ``--upload DIR``: the files under
DIR land in the bucket under the same relative keys (``s3://pywren-demo/<key>``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "example_dags"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a DAG on the embedded default (no cloud account).")
    parser.add_argument("--dags-folder", default=str(DAGS), help="the DAG folder (default: example_dags)")
    parser.add_argument("--dag-id", default=None, help="the DAG to run (default: example_pywren_map)")
    parser.add_argument("--upload", default=None, help="a directory whose files go to the bucket first")
    return parser.parse_args(argv)


def upload(server: object, bucket: str, directory: str) -> int:
    """Put every file under ``directory`` into ``bucket`` under its relative path."""
    client = server.client()  # type: ignore[attr-defined]
    count = 0
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            client.put_object(
                Bucket=bucket, Key=path.relative_to(directory).as_posix(), Body=path.read_bytes()
            )
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    from pywren_deferrable.embedded import LocalS3Server, embedded_connection_env

    args = parse_args(argv)
    dags = str(Path(args.dags_folder).expanduser().resolve())
    dag_id = args.dag_id or "example_pywren_map"
    own_dag = args.dag_id is not None
    started = time.monotonic()
    home = tempfile.mkdtemp(prefix="pywren-demo-airflow-")
    server = LocalS3Server().start()
    try:
        bucket = server.create_bucket("pywren-demo")
        os.environ.update(
            AIRFLOW_HOME=home,
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=dags,
            AIRFLOW_CONN_LITHOPS_DEFAULT=embedded_connection_env(server.endpoint, bucket),
        )
        print(f"S3 endpoint {server.endpoint}, bucket {bucket}, AIRFLOW_HOME {home}", flush=True)
        if args.upload:
            print(f"uploaded {upload(server, bucket, args.upload)} files to s3://{bucket}/", flush=True)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL
        )
        from pywren_deferrable.embedded import run_dag_test

        state, results = run_dag_test(dags, dag_id)
    finally:
        server.stop()
    print(f"\nDAG run state: {state} ({time.monotonic() - started:.1f}s)")
    if own_dag:
        for task_id, value in sorted(results.items()):
            print(f"{task_id} returned: {value!r:.500}")
        return 0 if state == "success" else 1
    print(f"map_task returned: {results.get('map_task')}")
    return 0 if state == "success" and results.get("map_task") == [2, 3, 4] else 1


if __name__ == "__main__":
    sys.exit(main())
