# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := realtime tests bench app.py gunicorn.conf.py

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.run-installed $@

run: $(VENV)/.run-installed
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy --strict realtime

unit: $(VENV)/.dev-installed
	$(BIN)/pytest

test: lint typecheck unit

bench: | $(BIN)/python
	started=$$(date +%s) && bench/setup.sh $(BIN) && $(BIN)/python bench/hub_fanout.py && \
		$(BIN)/python bench/full_worker.py && $(BIN)/python bench/suite.py --started $$started

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
