# Two commands for a fresh machine: `make up` runs the whole mesh, `make test` runs every test.
# `make deploy-test` builds the image and runs deploy/docker-compose.yml for real (a Docker engine).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GENERATED := gateway/generated/taskmesh.pb
PROTOS := $(shell find protos -name '*.proto')
# The web console has no build step: its third-party modules are vendored (and committed) from
# package-lock.json; this re-vendors them when the lockfile or vendor.mjs changed.
CONSOLE := gateway/console
CONSOLE_VENDOR := $(CONSOLE)/vendor/VERSIONS.json

# Two pytest-xdist workers, each taking whole files (a file's mesh is started once): most of the
# suite waits on meshes, leases and timeouts, so two at once roughly halve its time on 2 cores.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

.PHONY: up test deploy-test generate lint typecheck bench clean clean-test-state console-vendor

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(GENERATED): $(STAMP) $(PROTOS) scripts/generate.py $(wildcard gateway/openapi*.py gateway/protoindex.py gateway/http_rules.py)
	$(BIN)/python scripts/generate.py

generate: $(STAMP)
	$(BIN)/python scripts/generate.py

up: $(GENERATED) $(CONSOLE_VENDOR)
	$(BIN)/taskmesh-up --workers 2

# Without Node the committed vendor/ is served as it is (tests/unit/test_console_routes.py checks
# that it matches the lockfile).
$(CONSOLE_VENDOR): $(CONSOLE)/package-lock.json $(CONSOLE)/vendor.mjs
	@if command -v npm >/dev/null; then cd $(CONSOLE) && npm ci --no-audit --no-fund && node vendor.mjs; \
	else echo "npm not found: serving the committed $(CONSOLE)/vendor/"; fi

console-vendor:
	cd $(CONSOLE) && npm ci --no-audit --no-fund && node vendor.mjs

test: $(GENERATED)
	scripts/ensure_tools.sh chromium
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_PARALLEL)

# Not part of `make test` (minutes, a Docker engine): tests/deploy/test_compose_stack.py.
deploy-test: $(GENERATED)
	scripts/ensure_tools.sh docker
	$(BIN)/pytest -m compose -s --durations=0 tests/deploy/test_compose_stack.py

lint: $(STAMP)
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(GENERATED)
	$(BIN)/mypy

bench: $(GENERATED)
	$(BIN)/python -m bench.trigger_throughput

# Databases, RabbitMQ queues/exchanges and Redis keys that killed test sessions or benchmarks left
# behind; only those whose creating process (the pid in the name) is gone. DRY_RUN=1 lists them.
clean-test-state: $(STAMP)
	$(BIN)/python -m tests.clean_state $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf $(VENV) gateway/generated taskmesh/v1/*_pb2*.py*
