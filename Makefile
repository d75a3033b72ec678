# visiontune: every command a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
STACK ?= dev
# The Functions worker's indexer: pure Python, declares Python >= 3.13, so it is installed without its checks.
FUNCTIONS_RUNTIME := azure-functions-runtime==1.3.0

.PHONY: help setup lock browser test demo bench bench-intake bench-predict conformance local-up deploy destroy package clean

help:
	@echo "make demo         run the whole pipeline on the local stack (Azurite + emulator + functions host)"
	@echo "make test         install what is missing, then lint (ruff), type-check (mypy) and run the test suite"
	@echo "make lock         recompile the requirements*.txt locks from requirements*.in (uv; needs PyPI)"
	@echo "make bench        converter speed and memory benchmark"
	@echo "make bench-intake intake from blob storage (Azurite, 20 ms per request): reads, cache, memory"
	@echo "make bench-predict   what a wrong preprocessing at prediction time costs in accuracy (digits, local stack)"
	@echo "make conformance  schemathesis against the Azure OpenAI authoring spec, on the emulator"
	@echo "make local-up     start Azurite, the emulator and the functions host in the foreground"
	@echo "make deploy STACK=dev   provision on Azure, publish the app, wire Event Grid (needs az + pulumi)"
	@echo "make destroy STACK=dev  after a confirmation: delete the stack and purge its Azure OpenAI account"

setup: $(PY_STAMP) $(NODE_STAMP) browser

# Headless Chromium for the report tests (Debian packages). Installed when missing and we may (root +
# apt-get); elsewhere the browser tests skip and say why.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium + chromium-driver (Debian) for the report tests"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: chromium not found and cannot be installed here; browser tests will skip"; fi; \
	fi

# Installs the locks (every package pinned, transitive ones included; `make lock` writes them).
$(PY_STAMP): requirements.txt requirements-local.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --ignore-requires-python $(FUNCTIONS_RUNTIME)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Recompile the locks after changing a requirements*.in (LOCK_ARGS=--upgrade: newest allowed versions).
lock: $(PY_STAMP)
	$(BIN)/python -m infra.locks $(LOCK_ARGS)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed for Azurite: install Node.js"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Lint and type-check first (rules and config in pyproject.toml), then the tests.
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/visiontune demo --out demo-out

bench: setup
	$(BIN)/python -m bench.convert_bench

bench-intake: setup
	$(BIN)/python -m bench.intake_bench $(BENCH_ARGS)

bench-predict: setup
	$(BIN)/python -m bench.prediction_bench

conformance: setup
	$(BIN)/python -m local.conformance

local-up: setup
	$(BIN)/visiontune local up

package: setup
	$(BIN)/python -m infra.package --out dist/app.zip

deploy: setup
	bash infra/deploy.sh $(STACK)

destroy:
	bash infra/destroy.sh $(STACK)

clean:
	rm -rf $(VENV) node_modules dist demo-out .pytest_cache
