"""The embedded default: a real S3 endpoint on 127.0.0.1 and a Connection that uses it.

No cloud account is needed to run the demo or the tests: moto's S3 server stands in
for IBM COS and Lithops' ``localhost`` compute backend for IBM Code Engine / Cloud
Functions. Production changes only the Connection. Needs moto's server
(``pip install "pywren-deferrable[embedded]"``; the ``test`` extra has it too).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, cast

EMBEDDED_ACCESS_KEY = "embedded-access-key"
EMBEDDED_SECRET_KEY = "embedded-secret-key"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """Terminate ``process`` if it runs, and kill it if it has not exited after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class LocalS3Server:
    """A moto S3 server process on 127.0.0.1.

    :param port: the port to listen on (a free one if 0).
    """

    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalS3Server:
        """Start the server and wait until it answers."""
        if not self.port:
            self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        give_up = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return self
            except (urllib.error.URLError, OSError):
                if self.process.poll() is not None:
                    raise RuntimeError(f"moto server exited with code {self.process.returncode}") from None
                if time.monotonic() > give_up:
                    self.stop()
                    raise RuntimeError(
                        f"moto server did not answer on {self.endpoint} within {timeout}s"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (its data is lost)."""
        stop_process(self.process)

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=EMBEDDED_ACCESS_KEY,
            aws_secret_access_key=EMBEDDED_SECRET_KEY,
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> str:
        """Create ``name`` (if missing) and return it."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name


def embedded_connection(endpoint: str, bucket: str, **lithops_section: Any) -> dict[str, Any]:
    """The ``lithops`` Connection (as Airflow's JSON form) for Lithops localhost compute
    and the S3 endpoint at ``endpoint``. Use it as ``AIRFLOW_CONN_LITHOPS_DEFAULT``."""
    return {
        "conn_type": "lithops",
        "login": EMBEDDED_ACCESS_KEY,
        "password": EMBEDDED_SECRET_KEY,
        "extra": {
            "lithops": {"backend": "localhost", "storage": "minio", **lithops_section},
            "localhost": {"version": 1},
            "minio": {"endpoint": endpoint, "storage_bucket": bucket},
        },
    }


def embedded_connection_env(endpoint: str, bucket: str, **lithops_section: Any) -> str:
    """:func:`embedded_connection` serialized for an ``AIRFLOW_CONN_*`` variable."""
    return json.dumps(embedded_connection(endpoint, bucket, **lithops_section))


def embedded_pywren_connection(endpoint: str, bucket: str, **pywren_section: Any) -> dict[str, Any]:
    """Like :func:`embedded_connection`, for the ``pywren`` engine (pywren-ibm-cloud 1.7.3,
    Python 3.10): its localhost compute, its ``ceph`` (S3) storage on ``endpoint``."""
    return {
        "conn_type": "lithops",
        "login": EMBEDDED_ACCESS_KEY,
        "password": EMBEDDED_SECRET_KEY,
        "extra": {
            "engine": "pywren",
            "pywren": {
                "compute_backend": "localhost",
                "storage_backend": "ceph",
                "storage_bucket": bucket,
                # pywren feeds calls beyond its workers as its monitor sees calls end
                # (about once a second): a few more than the cores keeps them busy.
                "workers": 4,
                **pywren_section,
            },
            "ceph": {"endpoint": endpoint},
        },
    }


def run_dag_test(dags_folder: str, dag_id: str) -> tuple[str, dict[str, Any]]:
    """Run ``dag_id`` from ``dags_folder`` with ``dag.test()`` (triggers run inline) and
    return the run's state and every task's ``return_value`` XCom.

    ``dag.test()`` serializes the DAGs of Airflow's "dags-folder" bundle, whose path is
    ``settings.DAGS_FOLDER`` as read when Airflow was imported: it points at
    ``dags_folder`` for the run (and back after), so that a process can test DAGs of
    several folders. The metadata DB of ``AIRFLOW_HOME`` must have been migrated
    (``airflow db migrate``).
    """
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    if dags_folder not in sys.path:
        sys.path.insert(0, dags_folder)  # as Airflow does for the DAG folder
    saved_folder, saved_env = settings.DAGS_FOLDER, os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    settings.DAGS_FOLDER = dags_folder
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = dags_folder
    try:
        bag = DagBag(dags_folder)
        if bag.import_errors:
            raise RuntimeError(f"DAG import errors: {bag.import_errors}")
        dag = bag.get_dag(dag_id)
        if dag is None:
            raise KeyError(f"no DAG {dag_id!r} in {dags_folder}")
        run = dag.test()
    finally:
        settings.DAGS_FOLDER = saved_folder
        if saved_env is None:
            os.environ.pop("AIRFLOW__CORE__DAGS_FOLDER", None)
        else:
            os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = saved_env
    results: dict[str, Any] = {}
    with create_session() as session:
        query = XComModel.get_many(run_id=run.run_id, key="return_value", dag_ids=dag_id)
        for row in session.scalars(query):
            row = cast(Any, row)  # scalars() of a one-entity select yields the entity
            value = XComModel.deserialize_value(row)
            if row.map_index >= 0:
                results.setdefault(row.task_id, {})[row.map_index] = value
            else:
                results[row.task_id] = value
    return str(run.state), results
