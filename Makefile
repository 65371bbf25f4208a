# The commands the README shows. Each creates or updates .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
PYTEST_ARGS ?=

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv browser quickstart test test-fast bench clean

# The project itself (what the quickstart needs).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# Tests also cover the optional TensorFlow models and need the dev tools (scikit-learn, Playwright).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,tensorflow]'
	touch $(TEST_STAMP)

# Report tests render pages in Debian's headless Chromium; Playwright drives it (its own browser download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }
	@command -v chromium >/dev/null 2>&1 && chromium --version 2>/dev/null

venv: $(STAMP)

quickstart: venv
	$(BIN)/cupola quickstart

test: $(TEST_STAMP) browser
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(TEST_STAMP) browser
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/feature_pipeline.py
	$(BIN)/python benchmarks/partitioned_search.py
	$(BIN)/python benchmarks/online_latency.py
	$(BIN)/python benchmarks/batch_predict.py

clean:
	rm -rf cupola_data .pytest_cache test-artifacts
