"""Shared fixtures: a real S3 endpoint on 127.0.0.1, a Connection for it, an Airflow home.

Airflow reads its configuration when first imported, so the environment is set here,
at conftest import, before any test module imports Airflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests check what is computed, never how fast: these machines are shared and
# noisy, and Hypothesis' default 200 ms deadline per example is a wall-time assertion.
settings.register_profile("project", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("project")

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

from pywren_deferrable.embedded import (  # noqa: E402
    LocalS3Server,
    embedded_connection_env,
    embedded_pywren_connection,
)
from pywren_deferrable.job import ENGINE_LITHOPS, ENGINE_PYWREN, ENGINES  # noqa: E402

# Which engines the tests marked ``engines`` run on (comma-separated; default: both).
# `make test-pywren` sets it to "pywren" in its Python 3.10 virtualenv, where a missing
# pywren-ibm-cloud is then a failure instead of a skip.
TEST_ENGINES_ENV = "PYWREN_DEFERRABLE_TEST_ENGINES"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("engines"):
        wanted = os.environ.get(TEST_ENGINES_ENV)
        engines = wanted.split(",") if wanted else list(ENGINES)
        metafunc.parametrize("engine", engines, indirect=True)


def pywren_runs_here() -> bool:
    """pywren-ibm-cloud 1.7.3 is installed and this Python can run it (3.10 at the newest)."""
    import importlib.util

    return sys.version_info < (3, 11) and importlib.util.find_spec("pywren_ibm_cloud") is not None


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The engine a test runs on: ``lithops``, or each engine for tests marked ``engines``."""
    engine = str(getattr(request, "param", ENGINE_LITHOPS))
    if engine == ENGINE_PYWREN and not pywren_runs_here():
        if os.environ.get(TEST_ENGINES_ENV):
            pytest.fail(f"{TEST_ENGINES_ENV} asks for pywren, which cannot run here")
        pytest.skip("pywren-ibm-cloud 1.7.3 runs on Python 3.10 only: `make test-pywren` runs this")
    return engine


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
def lithops_conn(monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server, bucket: str, engine: str) -> str:
    """The ``lithops_default`` Connection: localhost compute + the session's S3 endpoint,
    on the test's engine."""
    if engine == ENGINE_PYWREN:
        value = json.dumps(embedded_pywren_connection(s3_server.endpoint, bucket))
    else:
        value = embedded_connection_env(s3_server.endpoint, bucket)
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_DEFAULT", value)
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
