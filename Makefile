# Two entry points for a fresh machine: `make dev` and `make test`. Each bootstraps .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev dev-reset test lint format build bench vendor-web clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# checkov pins its own boto3, so it gets a venv of its own (pyproject.toml: group `checkov`).
CHECKOV := $(VENV)/checkov/.installed
$(CHECKOV): pyproject.toml $(STAMP)
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet --upgrade pip
	$(VENV)/checkov/bin/pip install --quiet --group checkov
	touch $@

dev: $(STAMP) ## run the whole stack locally (DynamoDB, HTTP, WebSocket, fan-out, sweeper)
	$(BIN)/pts dev

dev-reset: $(STAMP) ## the same, from empty tables: forget what .pts-local/ kept
	$(BIN)/pts dev --reset

# The JavaScript client's dev dependencies (tsc, React, a DOM), from its lock file.
JS_MODULES := clients/js/node_modules/.package-lock.json

$(JS_MODULES): clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund

test: $(STAMP) $(CHECKOV) $(JS_MODULES) ## every test: unit, template (checkov), sam build, integration (Node too), browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/sam validate --lint

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

build: $(STAMP) ## sam build: Lambda artifacts for python3.13 on arm64, no Docker needed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build

bench: $(STAMP) ## the reply-2000 workload and its baselines: docs/benchmarks.md, docs/bench/
	$(BIN)/python -m bench

vendor-web: ## re-vendor the chat page's libraries from npm (pinned in the script), licenses beside them
	scripts/vendor-web.sh

clean:
	rm -rf .aws-sam build dist
