# vocalis developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
# uv is bootstrapped with pip when missing; everything else comes from the locked environment.
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --locked
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: uv
uv: ## Install uv with pip if it is missing
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv

.PHONY: sync
sync: uv ## Create .venv from uv.lock (all extras and dev tools)
	$(UV) sync --locked --all-extras

.PHONY: demo
demo: sync ## Run the main job on the embedded synthetic data
	$(RUN) vocalis data synth data/synthetic
	$(RUN) vocalis data prepare

.PHONY: lint
lint: sync ## ruff check + ruff format --check + mypy
	$(RUN) ruff check src tests benchmarks
	$(RUN) ruff format --check src tests benchmarks
	$(RUN) mypy src

.PHONY: format
format: sync ## Apply ruff's fixes and formatting
	$(RUN) ruff check --fix src tests benchmarks
	$(RUN) ruff format src tests benchmarks

.PHONY: test
test: lint ## Lint, type-check and run every test (slow ones included)
	$(RUN) pytest $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: sync ## Run the tests not marked slow
	$(RUN) pytest -m "not slow" $(PYTEST_ARGS)

.PHONY: serve
serve: sync ## Serve a model over HTTP (MODEL=artifacts/demo, PORT=8000); web page at http://127.0.0.1:8000/
	$(RUN) vocalis serve --model $(or $(MODEL),artifacts/demo) --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),8000)

.PHONY: loadtest
loadtest: sync ## Locust load test of a local server (MODEL, USERS=8, DURATION=30s); CSV in loadtest-results/
	RUN="$(RUN)" MODEL="$(or $(MODEL),artifacts/demo)" USERS="$(or $(USERS),8)" DURATION="$(or $(DURATION),30s)" \
		bash tests/performance/run_loadtest.sh
