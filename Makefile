# Two commands for a fresh machine: `make demo` and `make test`. Both create a local
# virtualenv (.venv) with uv and install the project and what it needs from PyPI.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null)

.PHONY: install demo test lint wheel-check docs unit integration e2e benchmarks clean

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(UV)" ]; then $(PYTHON) -m pip install -q uv; fi
	uv venv -q --allow-existing -p $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install -q -e ".[test]"
	@touch $@

install: $(VENV)/.installed

demo: install
	$(PY) scripts/demo.py

lint: install
	$(VENV)/bin/ruff check pywren_deferrable tests scripts example_dags benchmarks
	$(VENV)/bin/ruff format --check pywren_deferrable tests scripts example_dags benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir $(VENV)/site

wheel-check: install
	PYTHON=$(PYTHON) bash scripts/check_wheel.sh

test: lint wheel-check
	$(PY) -m pytest -q -p no:cacheprovider

docs: install
	$(VENV)/bin/mkdocs serve

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

e2e: install
	$(PY) -m pytest -q tests/e2e

benchmarks: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
