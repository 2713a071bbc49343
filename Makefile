# Every target bootstraps its own virtualenv; nothing needs installing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP_BASE := $(VENV)/.stamp-base
STAMP_TEST := $(VENV)/.stamp-test
STAMP_FEEDS := $(VENV)/.stamp-feeds
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test test-flink bench lint typecheck clean venv stack

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_BASE): pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

# the venue adapters the demo runs over loopback (websockets, httpx, QuickFIX: built from source the first time)
$(STAMP_FEEDS): pyproject.toml $(STAMP_BASE)
	$(PIP) -e '.[feeds]'
	touch $@

$(STAMP_TEST): pyproject.toml $(STAMP_BASE)
	$(PIP) -e '.[test]'
	touch $@

# PyFlink pins numpy/pandas/pyarrow below what the main venv uses, so the Flink runtime gets its own venv.
FLINK_VENV  ?= .venv-flink
FLINK_BIN   := $(FLINK_VENV)/bin
STAMP_FLINK := $(FLINK_VENV)/.stamp-flink
FLINK_TESTS := tests/test_flink_bars_differential.py

$(FLINK_BIN)/python:
	$(PYTHON) -m venv $(FLINK_VENV)

$(STAMP_FLINK): pyproject.toml | $(FLINK_BIN)/python
	$(FLINK_BIN)/python -m pip install --disable-pip-version-check -q 'apache-flink==2.2.1' msgspec numba pyarrow pytest
	$(FLINK_BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

venv: $(STAMP_BASE)

demo: $(STAMP_FEEDS)
	$(BIN)/commodex demo $(ARGS)

TYPED := market jobs simulators serving commodex trading feeds stack bench

test: $(STAMP_TEST) test-flink
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The embedded bars kernel vs the same bars in Flink SQL on one seeded dirty feed (Java 17 required).
test-flink: $(STAMP_FLINK)
	$(FLINK_BIN)/python -m pytest -q -p no:cacheprovider $(FLINK_TESTS)

# the scale-out services on 127.0.0.1: make stack (up), make stack ARGS=status, make stack ARGS=down
stack: $(STAMP_TEST)
	$(BIN)/commodex stack $(or $(ARGS),up)

# cryptofeed 2.3.2 (the decode reference bench/bench_feeds.py compares against) in its own venv: its pins clash
# with ours, and 2.4+ cannot read the 2021 capture in ../shared/data/cryptofeed_ws_captures
REF_VENV   ?= .venv-bench-ref
STAMP_REF  := $(REF_VENV)/.stamp-ref

$(STAMP_REF):
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install --disable-pip-version-check -q 'cryptofeed==2.3.2'
	touch $@

bench: $(STAMP_TEST) $(STAMP_REF)
	$(BIN)/python -m bench $(ARGS)

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)

clean:
	rm -rf $(VENV) $(FLINK_VENV) $(REF_VENV) .commodex build *.egg-info
