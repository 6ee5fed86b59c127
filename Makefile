# Everyday commands. `make migrate` and `make test` are the whole set-up on a fresh clone:
# the virtualenv is created and the project installed on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
r      ?= -1

.DEFAULT_GOAL := help
.PHONY: help venv migrate verify check sql revision downgrade current history db-up db-down test bench lint clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create .venv and install the project (done on demand by every target)

migrate: $(STAMP) ## upgrade to head (direct endpoint), then verify both endpoints
	@$(PY) -m neon_migrate.cli migrate

verify: $(STAMP) ## check both endpoints: reachable, SSL, at head
	@$(PY) -m neon_migrate.cli verify

check: $(STAMP) ## pre-deploy check: is this safe to ship? (changes nothing; args="--json")
	@$(PY) scripts/predeploy_check.py $(args)

sql: $(STAMP) ## print the upgrade SQL (offline: no database needed)
	@$(BIN)/alembic upgrade head --sql

revision: $(STAMP) ## autogenerate a revision from the models: make revision m="add x"
	@test -n "$(m)" || { echo 'error: give a message: make revision m="add invoices"' >&2; exit 2; }
	@$(BIN)/alembic revision --autogenerate -m "$(m)"

downgrade: $(STAMP) ## revert one revision (or: make downgrade r=<rev>)
	@$(BIN)/alembic downgrade $(r)

current: $(STAMP) ## the revision the database is at
	@$(BIN)/alembic current

history: $(STAMP) ## the revision history
	@$(BIN)/alembic history --indicate-current

db-up: $(STAMP) ## start (or reuse) the local twin: PostgreSQL and PgBouncer
	@$(PY) -m neon_migrate.cli db-up

db-down: $(STAMP) ## stop the local twin
	@$(PY) -m neon_migrate.cli db-down

test: $(STAMP) ## run the test suite (starts its own PostgreSQL)
	$(PY) -m pytest

bench: $(STAMP) ## benchmarks against raw Alembic, 20 ms RTT (args="--rtt-ms 50"); writes BENCHMARKS.md
	$(PY) scripts/bench.py $(args)

lint: $(STAMP) ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean: ## stop the local server; remove .venv, .local (local database) and caches
	@if [ -x $(PY) ]; then $(PY) -m neon_migrate.cli db-down || true; fi
	rm -rf $(VENV) .local .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
