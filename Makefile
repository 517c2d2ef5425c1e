# Aftercare: `make run` starts the whole platform (embedded mode), `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test test-fast migrate bench bench-scheduler bench-notify bench-survey bench-import lint services gateway prod-up prod-down clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required" if sys.version_info < (3, 11) else 0)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null \
		|| $(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## virtual environment with the pinned dependencies

run: install ## the whole platform on http://127.0.0.1:$${PORT:-8000} (SQLite under var/, in-process bus)
	$(PY) -m aftercare run

services: ## make sure the local Postgres and RabbitMQ are running (starts them if not)
	@scripts/services-up.sh

test: install services ## the full suite against real Postgres and RabbitMQ
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install ## import contracts (services independent, shared imports no service)
	$(VENV)/bin/lint-imports

migrate: install ## migrate every service's schema (production settings: AFTERCARE_DATABASE_URL ...)
	$(PY) -m aftercare migrate

bench: install services ## throughput and p99 through nginx, relay vs raw publish (prints JSON last)
	$(PY) -m bench

bench-scheduler: install services ## follow-up scheduler draining 100k due of 1M pending vs raw SKIP LOCKED claims (JSON last)
	$(PY) -m bench.scheduler

bench-notify: install services ## 50,000 message commands through policy and the provider sandbox vs raw provider calls (JSON last)
	$(PY) -m bench.notify

bench-survey: install services ## public survey answers/s through nginx vs bare, monthly report over 1M responses (JSON last)
	$(PY) -m bench.survey

bench-import: install services ## 100,000 customers with vehicles from one CSV through the import worker vs raw COPY (JSON last)
	$(PY) -m bench.imports

prod-up: install services ## production mode without Docker: each service's api + worker, nginx in front
	@scripts/prod-up.sh

prod-down:
	@scripts/prod-down.sh

clean:
	rm -rf var .pytest_cache
