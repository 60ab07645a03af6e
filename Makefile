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
	$(FLASK) run --host 127.0.0.1 --port 5000

## make test: install dev dependencies and run the whole suite (SQLite, jobs inline)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

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
