# The README's contract: `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Re-install whenever pyproject.toml changes (the stamp's name carries its hash).
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml 2>/dev/null | cut -c1-12)
RUN_DIR := .run

.PHONY: help setup run test bench dev.up dev.logs dev.down deps.check

help:
	@echo "make run        set up and start the platform on embedded defaults (127.0.0.1:8080)"
	@echo "make test       set up, start PostgreSQL and Redis, run every test"
	@echo "make bench      cold start, memory and load benchmarks -> bench/results/"
	@echo "make dev.up     PostgreSQL + Redis + the platform in the background; dev.logs, dev.down"
	@echo "make deps.check installed packages match the pins and are consistent"

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
