# Two commands for a fresh machine: `make up` runs the whole mesh, `make test` runs every test.
# `make deploy-test` builds the image and runs deploy/docker-compose.yml for real (a Docker engine).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GENERATED := gateway/generated/taskmesh.pb
PROTOS := $(shell find protos -name '*.proto')

.PHONY: up test deploy-test generate lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(GENERATED): $(STAMP) $(PROTOS) scripts/generate.py $(wildcard gateway/openapi*.py gateway/protoindex.py gateway/http_rules.py)
	$(BIN)/python scripts/generate.py

generate: $(STAMP)
	$(BIN)/python scripts/generate.py

up: $(GENERATED)
	$(BIN)/taskmesh-up --workers 2

test: $(GENERATED)
	scripts/ensure_tools.sh chromium
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

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

clean:
	rm -rf $(VENV) gateway/generated taskmesh/v1/*_pb2*.py*
