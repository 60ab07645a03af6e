# Two commands on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint bench worker relay clean i18n i18n-compile

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## make run: install, migrate, load demo data when empty, serve on http://127.0.0.1:5000
run: $(STAMP)
	$(FLASK) db upgrade
	$(FLASK) demo --if-empty
	$(FLASK) demo fraud --if-empty
	$(FLASK) run --host 127.0.0.1 --port 5000

## make test: install dev dependencies and run the whole suite (SQLite, jobs inline)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

## make e2e: the four user journeys in headless Chromium; screenshots in artifacts/screenshots
.PHONY: e2e
e2e: $(STAMP)
	$(BIN)/pytest -q tests/test_browser_customer.py tests/test_browser_warehouse.py \
		tests/test_browser_partner.py tests/test_browser_finance.py

## make fuzz: schemathesis against /api/openapi.json, in-process; CI runs 25 cases per operation
.PHONY: fuzz audit-deps
FUZZ_MAX_EXAMPLES ?= 200
fuzz: $(STAMP)
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) $(BIN)/pytest -q tests/test_fuzz_api.py

## make audit-deps: bandit (no high findings) and pip-audit on the locked dependencies
audit-deps: $(STAMP)
	.ci/audit-deps

## make bench: benchmarks that print figures (not part of CI)
bench: $(STAMP)
	$(BIN)/python -m bench.import_purchases
	$(BIN)/python -m bench.labels
	$(BIN)/python -m bench.claims_api --database sqlite
	$(BIN)/python -m bench.scans_api --database sqlite
	$(BIN)/python -m bench.partner_updates --database sqlite
	$(BIN)/python -m bench.import_repairs

## make i18n: re-extract marked strings into every catalog (then translate the empty ones)
i18n: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext -k _l -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations

## make i18n-compile: build the committed .mo files after editing the .po files
i18n-compile: $(STAMP)
	$(BIN)/pybabel compile -d translations --statistics

## Production-style processes (need REDIS_URL)
worker: $(STAMP)
	$(FLASK) worker

relay: $(STAMP)
	$(FLASK) outbox relay --loop

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache

# --- reliability: races and faults on PostgreSQL (tests/reliability, docs/reliability.md) ----
.PHONY: races faults
RELIABILITY_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/aftercare_ci
RELIABILITY_REDIS_URL ?= redis://127.0.0.1:6379/15
RACE_ROUNDS ?= 20
FAULT_ROUNDS ?= 3
RELIABILITY_DB = $(lastword $(subst /, ,$(RELIABILITY_DATABASE_URL)))

## make races: the five PostgreSQL races through the HTTP API, RACE_ROUNDS rounds each
races: $(STAMP)
	psql "$(dir $(RELIABILITY_DATABASE_URL))postgres" -tc \
		"SELECT 1 FROM pg_database WHERE datname='$(RELIABILITY_DB)'" | grep -q 1 \
		|| psql "$(dir $(RELIABILITY_DATABASE_URL))postgres" -c "CREATE DATABASE $(RELIABILITY_DB)"
	TEST_DATABASE_URL=$(RELIABILITY_DATABASE_URL) TEST_REDIS_URL=$(RELIABILITY_REDIS_URL) \
		RACE_ROUNDS=$(RACE_ROUNDS) AFTERCARE_FORBID_SKIPS=1 \
		$(BIN)/pytest -q tests/reliability/test_races.py $(PYTEST_ARGS)

## make faults: worker SIGKILL, Redis down, DB connection dropped, audit tamper; FAULT_ROUNDS
faults: $(STAMP)
	psql "$(dir $(RELIABILITY_DATABASE_URL))postgres" -tc \
		"SELECT 1 FROM pg_database WHERE datname='$(RELIABILITY_DB)'" | grep -q 1 \
		|| psql "$(dir $(RELIABILITY_DATABASE_URL))postgres" -c "CREATE DATABASE $(RELIABILITY_DB)"
	TEST_DATABASE_URL=$(RELIABILITY_DATABASE_URL) FAULT_ROUNDS=$(FAULT_ROUNDS) \
		AFTERCARE_FORBID_SKIPS=1 $(BIN)/pytest -q tests/reliability/test_faults.py $(PYTEST_ARGS)

# --- load: a mixed workload on the production stack (bench/load.py, docs/reliability.md) -------
.PHONY: load
LOAD_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/aftercare_load
LOAD_REDIS_URL ?= redis://127.0.0.1:6379/13
LOAD_SECONDS ?= 60
LOAD_USERS ?= 16
LOAD_WORKERS ?= 2
LOAD_RQ_WORKERS ?= 2

## make load: LOAD_USERS virtual users for LOAD_SECONDS against gunicorn + PostgreSQL + Redis +
## rq workers + relay on loopback, then every answer checked against the rows (LOAD_REPORT=file)
load: $(STAMP)
	$(BIN)/python -m bench.load --database-url $(LOAD_DATABASE_URL) \
		--redis-url $(LOAD_REDIS_URL) --seconds $(LOAD_SECONDS) --users $(LOAD_USERS) \
		--workers $(LOAD_WORKERS) --rq-workers $(LOAD_RQ_WORKERS) \
		$(if $(LOAD_REPORT),--json $(LOAD_REPORT)) $(LOAD_ARGS)
