# Quick start: `make demo` (1M tickets on the embedded PostgreSQL, then the
# rotation) and `make test`. Both create .venv from pyproject.toml first, from
# wheels only: no compiler or headers needed. MariaDB/MySQL needs the `mysql`
# extra on top (mysqlclient builds from source): .ci/run installs it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ROWS ?= 1000000
WORKERS ?= 8
# Extra pytest arguments, e.g. PYTEST_ARGS='-m "not slow"' (CI uses it per database).
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench clean

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[demo,test,bench,lint]'
	touch $@

demo: venv
	$(BIN)/python -W ignore manage.py migrate -v 0
	$(BIN)/python -W ignore manage.py seed_tickets --count $(ROWS) --if-empty
	$(BIN)/python -W ignore manage.py regenerate_token_async --workers $(WORKERS)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy rotator asyncproj tickets

bench: venv
	$(BIN)/python bench/run.py --rows $(ROWS)

clean:
	rm -rf $(VENV) .venv-django42 .pgdata .data
