# The two commands a newcomer needs: `make demo` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)

export PRIMETRIC_DSN ?= postgresql://postgres@127.0.0.1:5432
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PATH := $(BIN):$(PATH)
# `make migrate` applies to the database of connection primetric_db (override it like any Airflow connection).
export AIRFLOW_CONN_PRIMETRIC_DB ?= $(PRIMETRIC_DSN)/primetric

.PHONY: venv postgres browser migrate demo test test-unit mutation lint bench bench-smoke clean
.PHONY: airflow airflow-stop

venv: $(STAMP)
# The pinned requirements, plus this project as an editable package (src/, include/sql/, its provider entry point).
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) \
	  || { echo "Python 3.11 with venv is needed: apt-get install python3.11-venv (or make PYTHON=...)"; exit 1; }
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv \
	  && $(BIN)/uv pip install -q --python $(BIN)/python -r requirements.txt -e . \
	  || $(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -e .
	@rm -f $(VENV)/.installed-* && touch $@

postgres: venv
	@scripts/ensure-postgres.sh "$(PRIMETRIC_DSN)"

browser:
	@scripts/ensure-browser.sh

migrate: venv postgres
	@$(BIN)/python -m primetric_harvest.migrate --create-database

demo: venv postgres
	@$(BIN)/python scripts/demo.py

# A full local Airflow 3 (api-server, scheduler, dag-processor, triggerer) + simulator + demo data; Ctrl-C stops it.
# AUTH=fab: the FAB auth manager of production (users, roles, per-DAG permissions) instead of the simple one.
# EXECUTOR=celery WORKERS=2: CeleryExecutor on the local Redis (db 5) with WORKERS Celery workers (README,
# Scaling out on Celery).
AUTH ?= simple
EXECUTOR ?= local
WORKERS ?= 2
airflow: venv postgres
	@$(BIN)/python scripts/airflow_local.py run --auth $(AUTH) --executor $(EXECUTOR) --workers $(WORKERS)

airflow-stop:
	@$(BIN)/python scripts/airflow_local.py stop

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every tier (unit, db, airflow, browser): what CI runs.
test: venv postgres browser lint
	$(BIN)/python -m pytest

# The pure tests only (pytest -m unit): seconds, no PostgreSQL, no Airflow, no network.
test-unit: venv
	$(BIN)/python -m pytest -m unit

# Mutation testing of the pure rules (plan.py, transform.py) against their unit tests; not part of `make test`
# (minutes of both cores). mutmut works on a copy of the tree in mutants/ ([tool.mutmut] in pyproject.toml).
mutation: venv
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

bench: venv postgres
	$(BIN)/python -m bench

bench-smoke: venv postgres
	$(BIN)/python -m bench --smoke

clean:
	rm -rf .airflow .pytest_cache .ruff_cache .mypy_cache mutants
