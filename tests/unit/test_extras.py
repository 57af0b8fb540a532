"""A Connection whose backend's SDK is missing gets an error naming the extra to install,
at submit (before Lithops is called) and at test_connection: never a bare
ModuleNotFoundError from inside Lithops."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import lithops
import pytest

from pywren_deferrable import extras
from pywren_deferrable.config import COMPUTE_BACKENDS, STORAGE_BACKENDS, build_config
from pywren_deferrable.extras import (
    COMPUTE_MODULES,
    STORAGE_MODULES,
    MissingExtraError,
    check_backend_modules,
    missing_modules,
    module_missing,
)
from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.submit import JobSpec, submit

ROOT = Path(__file__).resolve().parents[2]
LITHOPS_DIR = Path(lithops.__file__).parent

IBM_COS_EXTRA = {
    "lithops": {"backend": "localhost", "storage": "ibm_cos"},
    "ibm_cos": {"endpoint": "https://127.0.0.1:1", "storage_bucket": "b", "region": "eu-de"},
}


def hide_modules(monkeypatch: pytest.MonkeyPatch, *hidden: str) -> None:
    """Make ``find_spec`` report ``hidden`` (and their submodules) as not installed."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if any(name == h or name.startswith(h + ".") for h in hidden):
            return None
        return real(name, package)

    monkeypatch.setattr(extras.importlib.util, "find_spec", find_spec)


def test_ibm_modules_are_installed_by_the_test_extra() -> None:
    # The `test` extra pulls in [ibm]: the IBM COS tests run Lithops' ibm_cos backend.
    assert missing_modules("code_engine", "ibm_cos") == []
    assert missing_modules("ibm_cf", "ibm_cos") == []
    check_backend_modules(build_config(IBM_COS_EXTRA, login="k", password="s"))


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "ibm_cloud_sdk_core")
    with pytest.raises(MissingExtraError) as info:
        check_backend_modules(build_config(IBM_COS_EXTRA, login="k", password="s"))
    message = str(info.value)
    assert "'ibm_cos'" in message and "ibm_cloud_sdk_core" in message
    assert 'pip install "pywren-deferrable[ibm]"' in message
    assert isinstance(info.value, ImportError)


def test_compute_and_storage_extras_are_named_together(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "kubernetes", "redis")
    config = {"lithops": {"backend": "k8s", "storage": "redis"}}
    with pytest.raises(MissingExtraError, match=r"pywren-deferrable\[kubernetes,redis\]") as info:
        check_backend_modules(config)
    assert "compute backend 'k8s' needs kubernetes" in str(info.value)
    assert "storage backend 'redis' needs redis" in str(info.value)


def test_backends_without_sdks_and_pywren_configs_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "boto3", "ibm_botocore", "ibm_cloud_sdk_core")
    check_backend_modules({"lithops": {"backend": "openwhisk", "storage": "localhost"}})
    check_backend_modules({"pywren": {"compute_backend": "ibm_cf", "storage_backend": "ibm_cos"}})


def test_a_missing_parent_package_counts_as_missing() -> None:
    assert module_missing("surely_not_installed_pkg.sub.module")
    assert not module_missing("ibm_botocore.credentials")


def test_submit_refuses_before_lithops_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    import pywren_deferrable.submit as submit_module

    def must_not_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Lithops was called")

    monkeypatch.setattr(submit_module, "submit_detached", must_not_run)
    monkeypatch.setattr(submit_module, "submit_in_process", must_not_run)
    hide_modules(monkeypatch, "ibm_cloud_sdk_core")
    for backend in ("localhost", "code_engine"):
        extra = {**IBM_COS_EXTRA, "lithops": {"backend": backend, "storage": "ibm_cos"}}
        spec = JobSpec(
            call_type="map", function=abs, iterdata=[1], config=build_config(extra, login="k", password="s")
        )
        with pytest.raises(MissingExtraError, match=r"pywren-deferrable\[ibm\]"):
            submit(spec, deadline=None)


def test_test_connection_reports_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LITHOPS_DEFAULT",
        json.dumps({"conn_type": "lithops", "login": "k", "password": "s", "extra": IBM_COS_EXTRA}),
    )
    hide_modules(monkeypatch, "ibm_boto3")
    ok, message = LithopsHook().test_connection()
    assert not ok
    assert message.startswith("MissingExtraError:")
    assert 'pip install "pywren-deferrable[ibm]"' in message


def test_every_extra_named_exists_and_follows_lithops() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (test-pywren runs 3.10)
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for _modules, extra in (*COMPUTE_MODULES.values(), *STORAGE_MODULES.values()):
        assert extra in optional, extra
        assert any(req.startswith(f"lithops[{extra}]") for req in optional[extra]), optional[extra]
    assert set(COMPUTE_MODULES) <= COMPUTE_BACKENDS
    assert set(STORAGE_MODULES) <= STORAGE_BACKENDS


# Lithops' own dependencies (always installed with it), and modules used only by the
# functions' side (entry points that run in the cloud's container).
LITHOPS_DEPENDENCIES = {
    "click", "tabulate", "six", "yaml", "pika", "tqdm", "tblib", "requests", "paramiko",
    "cloudpickle", "ps_mem", "psutil", "urllib3", "flask", "lithops",
}  # fmt: skip
FOLLOWED = {"ibm_cos": ["lithops/util/ibm_token_manager.py"], "ibm_cf": ["lithops/util/ibm_token_manager.py"]}


def imported_top_modules(paths: list[Path]) -> set[str]:
    """The dotted module names (as deep as the table needs) that ``paths`` import."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("kind", "backend"),
    [("compute", b) for b in sorted(COMPUTE_MODULES)] + [("storage", b) for b in sorted(STORAGE_MODULES)],
)
def test_table_covers_what_lithops_backends_import(kind: str, backend: str) -> None:
    """Every third-party module a Lithops backend imports (client side) is in the table."""
    if kind == "storage":
        directory = LITHOPS_DIR / "storage" / "backends" / backend
        modules = STORAGE_MODULES[backend][0]
    else:
        directory = LITHOPS_DIR / "serverless" / "backends" / backend
        if not directory.is_dir():
            directory = LITHOPS_DIR / "standalone" / "backends" / backend
        modules = COMPUTE_MODULES[backend][0]
    files = [p for p in directory.glob("*.py") if "entry_point" not in p.name]
    files += [LITHOPS_DIR.parent / extra for extra in FOLLOWED.get(backend, [])]
    assert files, directory
    third_party = {
        name
        for name in imported_top_modules(files)
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in LITHOPS_DEPENDENCIES
    }
    for name in third_party:
        assert any(name == m or name.startswith(m + ".") or m.startswith(name + ".") for m in modules), (
            f"Lithops' {backend} backend imports {name}, which extras.py does not list"
        )
