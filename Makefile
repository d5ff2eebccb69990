# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config.example.toml

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.run-installed

## run: set up, import the samples (so there are tickets to look at), then run the
## daemon on the embedded default (SQLite and files under ./var; SMTP on 127.0.0.1:2525)
run: $(VENV)/.run-installed
	$(BIN)/mailtriage --config $(CONFIG) import samples
	$(BIN)/mailtriage --config $(CONFIG) tickets list
	$(BIN)/mailtriage --config $(CONFIG) run

## test: set up and run ruff, mypy and pytest
test: $(VENV)/.dev-installed lint
	$(BIN)/pytest -q

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations
	$(BIN)/mypy

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
