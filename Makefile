# Set-up is part of every target: a fresh machine needs only python3 (3.11+) and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dashboard test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

## Start the dashboard on the sample workflows. Its exit status 1 says a run ended badly (the
## sample import-records fails by design): the session itself went fine, so make says nothing.
dashboard: $(STAMP)
	$(BIN)/runkon-tui sample_workflows || [ $$? -eq 1 ]

## Run every test: lint, architecture contract, unit, engine, CLI and dashboard tests, then the
## Ray cluster tests (tests/cluster: they start their own nodes, so one at a time, without xdist).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 -q -m 'not cluster'
	$(BIN)/pytest -p no:xdist -q -m cluster tests/cluster

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info
