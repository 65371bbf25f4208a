# The commands the README shows. Each creates or updates .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
PYTEST_ARGS ?=

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv system-packages quickstart lint test test-fast bench clean

# The project itself (what the quickstart needs).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# Tests also cover the optional TensorFlow models, the Cassandra backend and Kafka streams, and need the dev tools (scikit-learn, Playwright).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,tensorflow,cassandra,kafka]'
	touch $(TEST_STAMP)

# Debian packages the tests use: headless Chromium renders the evaluation reports (Playwright drives it; its own
# browser download is not used); Prometheus and promtool scrape the endpoint and check the alert rules; Java 17 and
# Maven run the local Cassandra and Kafka (cluster/cassandra/start and cluster/kafka/start fetch their jars from Maven
# Central once; the tests start them).
SYSTEM_PACKAGES := chromium prometheus openjdk-17-jre-headless maven
system-packages:
	@command -v chromium >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 && \
		command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 || \
		$(SUDO) apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null; }
	@chromium --version 2>/dev/null && prometheus --version 2>&1 | head -1 && command -v promtool && java -version 2>&1 | head -1 && mvn -v 2>/dev/null | head -1

venv: $(STAMP)

quickstart: venv
	$(BIN)/cupola quickstart
	@echo "Next: source .venv/bin/activate (or prefix commands with .venv/bin/), then e.g. 'cupola models list',"
	@echo "'cupola monitor delivery_minutes', 'cupola features list'; README.md and docs/ have more. The UI starts now (Ctrl-C stops it)."
	$(BIN)/cupola ui

# Lint (ruff), types (mypy) and the layering contracts of pyproject.toml (import-linter), before the tests.
lint: $(TEST_STAMP)
	$(BIN)/ruff check platform tests benchmarks jobs serve_apps
	$(BIN)/ruff format --check platform tests benchmarks jobs serve_apps
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(TEST_STAMP) system-packages lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(TEST_STAMP) system-packages lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/feature_pipeline.py
	$(BIN)/python benchmarks/partitioned_search.py
	$(BIN)/python benchmarks/training_end_to_end.py
	$(BIN)/python benchmarks/online_latency.py
	$(BIN)/python benchmarks/batch_predict.py
	$(BIN)/python benchmarks/monitoring_overhead.py
	$(BIN)/python -m pip install --quiet -e '.[kafka]' && $(BIN)/python benchmarks/streaming_features.py
	$(BIN)/python -m pip install --quiet -e '.[cassandra]' && $(BIN)/python benchmarks/online_store.py

clean:
	rm -rf cupola_data .pytest_cache test-artifacts
