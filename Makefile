# `make run` runs the demo, `make test` the tests; each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint typecheck bench clean

$(VENV)/.installed: pyproject.toml
	@echo "make: creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "make: installing theater-py with its test and dev tools into $(VENV) (first run only; about a minute)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	@echo "make: $(VENV) is ready"
	touch $@

run: $(VENV)/.installed
	@echo "make: running the offline demo (theater-py demo)"
	$(PY) -m theater_py demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check theater_py actors tests bench
	$(VENV)/bin/ruff format --check theater_py actors tests bench

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
