# vocalis developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
# uv is bootstrapped with pip when missing; everything else comes from the locked environment.
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --locked
PYTEST_ARGS ?=
PYTEST_WORKERS ?= auto

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: uv
uv: ## Install uv with pip if it is missing
	@# plain pip first; a system Python that refuses it (PEP 668) gets a user install instead
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 \
		|| $(PYTHON) -m pip install --quiet uv 2>/dev/null \
		|| $(PYTHON) -m pip install --quiet --user uv 2>/dev/null \
		|| $(PYTHON) -m pip install --quiet --user --break-system-packages uv

.PHONY: sync
sync: uv ## Create .venv from uv.lock (all extras and dev tools)
	$(UV) sync --locked --all-extras --compile-bytecode

.PHONY: demo
demo: sync ## The main job on the embedded synthetic data: synth, prepare, train, export, predict
	$(RUN) vocalis data synth data/synthetic
	$(RUN) vocalis data prepare
	@# the demo's run and artifact are rebuilt each time; your own runs get unique directories
	rm -rf runs/demo artifacts/demo
	$(RUN) vocalis train experiment=demo run_dir=runs/demo
	$(RUN) vocalis export runs/demo -o artifacts/demo --overwrite
	$(RUN) vocalis data longfile data/long/demo-20min.wav --minutes 20 --from data/synthetic
	$(RUN) vocalis predict artifacts/demo data/long/demo-20min.wav -o predictions/demo-20min.csv --min-conf 0.5
	@echo "first detections (predictions/demo-20min.csv):"
	@head -n 8 predictions/demo-20min.csv
	@echo "outputs: runs/demo (run), artifacts/demo (model), predictions/demo-20min.csv; next: make serve"

.PHONY: data
data: sync ## Prepare the feature cache of the default data set (dvc repro runs the same stage)
	$(RUN) vocalis data prepare

.PHONY: docs
docs: sync ## Build the documentation site into site/
	$(RUN) mkdocs build --strict

.PHONY: lint
lint: sync ## ruff, mypy, hadolint (Dockerfiles), actionlint + schema check (workflows, Cloud Build)
	$(RUN) ruff check src tests benchmarks
	$(RUN) ruff format --check src tests benchmarks
	$(RUN) mypy src
	$(RUN) hadolint docker/*.Dockerfile
	$(RUN) actionlint
	@# the schemas ship inside check-jsonschema: no network needed
	$(RUN) check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(RUN) check-jsonschema --builtin-schema vendor.cloudbuild deploy/gcp/cloudbuild.yaml

.PHONY: format
format: sync ## Apply ruff's fixes and formatting
	$(RUN) ruff check --fix src tests benchmarks
	$(RUN) ruff format src tests benchmarks

.PHONY: test
test: lint ## Lint, type-check and run every test (slow ones included; the cluster and image tests not) with coverage
	@# the floor is fail_under in pyproject.toml [tool.coverage.report]; coverage.xml is for CI tools
	@# test files are spread over one worker per core (at most 4); the expensive session fixtures are built once
	@# and shared by the workers (tests/support/shared.py). PYTEST_WORKERS=0 runs everything in one process.
	@# The multi-process cluster tests are `make test-cluster`, the Docker image test `make test-image`
	@# (.ci/run runs all three).
	@# --no-loadscope-reorder: files go out in collection order, the slow ones first (tests/conftest.py)
	$(RUN) pytest -n $(PYTEST_WORKERS) --maxprocesses=4 --dist loadfile --no-loadscope-reorder -m "not image and not cluster" \
		--cov --cov-report=term:skip-covered --cov-report=xml --durations=25 $(PYTEST_ARGS)

.PHONY: test-cluster
test-cluster: sync ## The tests that start clusters of processes: Ray nodes (local and `ray start`), DDP ranks
	@# no coverage: everything they check runs in child processes (the CLI, Ray's workers, the DDP ranks)
	$(RUN) pytest -m cluster --durations=5 $(PYTEST_ARGS) tests/inference/test_ray_engine.py tests/training/test_faults.py

.PHONY: test-image
test-image: sync ## Build the API image with `make image`, run a container of it and test it (needs Docker)
	@# no coverage: the service runs inside the container; skips, saying why, where no Docker engine answers
	$(RUN) pytest -m image $(PYTEST_ARGS) tests/deploy/test_image.py

.PHONY: hooks
hooks: sync ## Install the git pre-commit hooks (local, offline: the tools of .venv)
	$(RUN) pre-commit install

.PHONY: image
image: ## Build the API image as vocalis-api:dev (a local Debian base where python:3.11-slim cannot be pulled)
	@# a TLS-intercepting proxy's CA bundle goes into the build (builder stage only): see docker/certs/README.md
	@if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cp /etc/ssl/certs/ca-certificates.crt docker/certs/; fi
	@base="$${BASE_IMAGE:-python:3.11-slim}"; \
	if ! docker image inspect "$$base" > /dev/null 2>&1 && ! docker pull -q "$$base" > /dev/null 2>&1; then \
		echo "$$base cannot be pulled: building the local base image instead"; \
		bash docker/local-base.sh vocalis-base:bookworm && base=vocalis-base:bookworm; \
	fi; \
	docker build --network host --build-arg BASE_IMAGE="$$base" -f docker/api.Dockerfile -t vocalis-api:dev .
	@docker image ls vocalis-api:dev --format 'vocalis-api:dev {{.Size}}'

.PHONY: bench
bench: sync ## Run every benchmark (prints figures; see docs/benchmarks.md)
	$(RUN) python benchmarks/bench_prepare.py
	$(RUN) python benchmarks/bench_train.py
	$(RUN) python benchmarks/bench_inference.py
	$(RUN) python benchmarks/bench_serving.py

.PHONY: test-fast
test-fast: sync ## Run the tests not marked slow
	$(RUN) pytest -n $(PYTEST_WORKERS) --maxprocesses=4 --dist loadfile -m "not slow and not image and not cluster" $(PYTEST_ARGS)

.PHONY: serve
serve: sync ## Serve a model over HTTP (MODEL=artifacts/demo, PORT=8000); web page at http://127.0.0.1:8000/
	$(RUN) vocalis serve --model $(or $(MODEL),artifacts/demo) --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),8000)

.PHONY: loadtest
loadtest: sync ## Locust load test of a local server (MODEL, USERS=8, DURATION=30s); CSV in loadtest-results/
	RUN="$(RUN)" MODEL="$(or $(MODEL),artifacts/demo)" USERS="$(or $(USERS),8)" DURATION="$(or $(DURATION),30s)" \
		bash tests/performance/run_loadtest.sh

.PHONY: monitor
monitor: sync ## vocalis serve + a real Prometheus with the alert rules (MODEL, PORT=8000, PROM_PORT=9090)
	RUN="$(RUN)" MODEL="$(or $(MODEL),artifacts/demo)" PORT="$(or $(PORT),8000)" PROM_PORT="$(or $(PROM_PORT),9090)" \
		bash monitoring/run_monitor.sh
