# Everyday commands. `make migrate` and `make test` are the whole set-up on a fresh clone:
# the virtualenv is created and the project installed on first use. The database targets
# (migrate, status, check, sql, revision, ...) are the ones `neon-migrate init` gives every
# project: aliases of `neon-migrate <command>`, here run from this repository's .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

NEON_MIGRATE      := $(PY) -m neon_migrate.cli
NEON_MIGRATE_DEPS := $(STAMP)

.DEFAULT_GOAL := help
.PHONY: help venv provision test test-fast bench lint clean

# The suite runs on parallel workers: each has its own PostgreSQL and PgBouncer, and every
# test its own database. Most of a test's time is spent waiting on a server or a timeout,
# so more workers than cores pays (TEST_WORKERS=1 runs it in one process). Tests are handed
# out one at a time, longest first (tests/conftest.py): no worker idles while another still
# has a queue of minute-long tests.
TEST_WORKERS ?= 4

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m neon_migrate.twin.provision $(PROVISION_ARGS)
	@touch $@

venv: $(STAMP) ## create .venv and install the project (done on demand by every target)

# The twin as capable as Neon: PgBouncer >= 1.21 (prepared statements) and uuid-ossp for the
# bundled PostgreSQL 17, built once from Debian's packages into ~/.cache/neon-migrate
# (needs root the first time; otherwise one line says what the twin falls back to).
provision: $(STAMP) ## build (or find cached) the twin's PgBouncer and uuid-ossp
	$(PY) -m neon_migrate.twin.provision $(PROVISION_ARGS)

include neon_migrate/templates/neon-migrate.mk

# PYTHONDONTWRITEBYTECODE (if the shell sets it) is cleared for the suite: pytest would
# otherwise rewrite the asserts of every test module and plugin again in each of its
# processes (5 s of CPU each) instead of reading them back from __pycache__.
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest

test: $(STAMP) ## run the test suite (starts its own PostgreSQL and PgBouncer)
	$(PYTEST) -n $(TEST_WORKERS) --dist load --maxschedchunk 1

test-fast: $(STAMP) ## the tests that need no database server (under a minute)
	$(PYTEST) -m noserver -q

bench: $(STAMP) ## benchmarks against raw Alembic, 20 ms RTT (args="--rtt-ms 50"); writes BENCHMARKS.md
	$(PY) scripts/bench.py $(args)

lint: $(STAMP) ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean: ## stop the local server; remove .venv, .local (local database) and caches
	@if [ -x $(PY) ]; then $(PY) -m neon_migrate.cli db-down || true; fi
	rm -rf $(VENV) .local .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
