#!/usr/bin/env bash
# Quality gate: the wheel builds, installs in a fresh virtualenv, and Airflow lists the provider
# (with its connection type, hook, triggers and task decorators).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
uv build -q --wheel --out-dir "$work/dist" .
uv venv -q -p "${PYTHON:-python3}" "$work/venv"
VIRTUAL_ENV="$work/venv" uv pip install -q "$work"/dist/*.whl
export AIRFLOW_HOME="$work/airflow" AIRFLOW__CORE__LOAD_EXAMPLES=False
"$work/venv/bin/airflow" providers list -o plain > "$work/providers.txt" 2>/dev/null
grep -q "pywren-deferrable" "$work/providers.txt" || { echo "provider not listed"; cat "$work/providers.txt"; exit 1; }
"$work/venv/bin/python" - <<'PY'
from airflow.providers_manager import ProvidersManager
from airflow.sdk import task
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

assert "lithops" in ProvidersManagerTaskRuntime().hooks, "connection type 'lithops' not registered"
pm = ProvidersManager()
for name in ("pywren_map", "pywren_call_async", "pywren_map_reduce"):
    assert callable(getattr(task, name)), name
widgets = [k for k in pm.connection_form_widgets if k.startswith("extra__lithops__")]
assert "extra__lithops__iam_api_key" in widgets, widgets
print("wheel OK: provider, connection type, form fields and task decorators registered")
PY
# The [ibm] extra gives everything Lithops' IBM backends import (IBM COS, Code Engine, Cloud
# Functions, VPC): the provider's own check finds nothing missing, and the backends load.
wheel=$(ls "$work"/dist/*.whl)
VIRTUAL_ENV="$work/venv" uv pip install -q "${wheel}[ibm]"
"$work/venv/bin/python" - <<'PY'
import importlib

from pywren_deferrable.extras import missing_modules

for compute in ("code_engine", "ibm_cf", "ibm_vpc"):
    assert not missing_modules(compute, "ibm_cos"), missing_modules(compute, "ibm_cos")
for module in (
    "lithops.storage.backends.ibm_cos",
    "lithops.serverless.backends.code_engine",
    "lithops.serverless.backends.ibm_cf",
    "lithops.standalone.backends.ibm_vpc",
):
    importlib.import_module(module)
print("wheel[ibm] OK: Lithops' IBM COS, Code Engine, Cloud Functions and VPC backends load")
PY
