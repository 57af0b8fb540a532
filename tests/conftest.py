"""Shared fixtures: a real S3 endpoint on 127.0.0.1, a Connection for it, an Airflow home.

Airflow reads its configuration when first imported, so the environment is set here,
at conftest import, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DAGS = ROOT / "example_dags"
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="pywren-tests-"))

os.environ["AIRFLOW_HOME"] = str(_SESSION_TMP / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(EXAMPLE_DAGS)
os.environ["PYWREN_DEFERRABLE_RUNNER_DIR"] = str(_SESSION_TMP / "runners")
# The payload functions of the tests and examples must be importable by the runner.
for path in (str(EXAMPLE_DAGS), str(ROOT / "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(EXAMPLE_DAGS), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
)

from pywren_deferrable.embedded import LocalS3Server, embedded_connection_env  # noqa: E402


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    """A moto S3 server on 127.0.0.1 for the whole session."""
    server = LocalS3Server().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: LocalS3Server) -> str:
    """A fresh bucket for one test."""
    return s3_server.create_bucket(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def lithops_conn(monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server, bucket: str) -> str:
    """The ``lithops_default`` Connection: localhost compute + the session's S3 endpoint."""
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", embedded_connection_env(s3_server.endpoint, bucket))
    return "lithops_default"


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB in the session's AIRFLOW_HOME (for dag.test())."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture(scope="session")
def example_dags() -> str:
    """The example DAG folder."""
    return str(EXAMPLE_DAGS)
