# The commands the README shows. Each creates or updates .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
PYTEST_ARGS ?=

.PHONY: venv quickstart test test-fast bench clean

# The project with its development tools (what the quickstart needs).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Tests also cover the optional TensorFlow models, so they install that extra too.
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,tensorflow]'
	touch $(TEST_STAMP)

venv: $(STAMP)

quickstart: venv
	$(BIN)/cupola quickstart

test: $(TEST_STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(TEST_STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/feature_pipeline.py
	$(BIN)/python benchmarks/partitioned_search.py

clean:
	rm -rf cupola_data .pytest_cache test-artifacts
