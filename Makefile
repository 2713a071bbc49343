# Every target bootstraps its own virtualenv; nothing needs installing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP_BASE := $(VENV)/.stamp-base
STAMP_TEST := $(VENV)/.stamp-test
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test bench lint typecheck clean venv stack

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_BASE): pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(STAMP_TEST): pyproject.toml $(STAMP_BASE)
	$(PIP) -e '.[test]'
	touch $@

venv: $(STAMP_BASE)

demo: $(STAMP_BASE)
	$(BIN)/commodex demo $(ARGS)

TYPED := market jobs simulators serving commodex trading feeds stack bench

test: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# the scale-out services on 127.0.0.1: make stack (up), make stack ARGS=status, make stack ARGS=down
stack: $(STAMP_TEST)
	$(BIN)/commodex stack $(or $(ARGS),up)

bench: $(STAMP_TEST)
	$(BIN)/python -m bench $(ARGS)

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)

clean:
	rm -rf $(VENV) .commodex build *.egg-info
