# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := realtime tests bench examples app.py gunicorn.conf.py
# The distribution was called realtime before it became flask-realtime: a .venv made then still
# holds it, and two distributions must not own one package.
UNINSTALL_OLD := $(BIN)/pip uninstall -q -y realtime >/dev/null 2>&1 || true

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The server extra: the base install is only the client and the CLI (README, Installing).
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(UNINSTALL_OLD)
	$(BIN)/pip install -q -e '.[server]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(UNINSTALL_OLD)
	$(BIN)/pip install -q -e '.[server,dev]'
	touch $(VENV)/.run-installed $@

# The repository's gunicorn.conf.py, which re-exports realtime.gunicorn_conf: the file is where
# a local override goes, and what deploy/, bench/ and the quick-start test run.
run: $(VENV)/.run-installed
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy --strict $(SOURCES)

unit: $(VENV)/.dev-installed
	$(BIN)/pytest

test: lint typecheck unit

bench: | $(BIN)/python
	started=$$(date +%s) && bench/setup.sh $(BIN) && $(BIN)/python bench/hub_fanout.py && \
		$(BIN)/python bench/full_worker.py && $(BIN)/python bench/inprocess_publish.py && \
		$(BIN)/python bench/mercure_select.py && \
		$(BIN)/python bench/suite.py --started $$started

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
