# Developer entry points (CONTRACT.md §1). Everything runs from .venv by path; nothing is activated.
# The local stack (PostgreSQL + Kafka, no Docker) is driven by `python -m devstack` (libs/devstack).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
# Workspace members: every libs/* and services/* folder with a pyproject.toml joins automatically.
MEMBER_PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
MEMBERS := $(patsubst %/pyproject.toml,%,$(MEMBER_PYPROJECTS))
TYPED_SRC := $(wildcard libs/*/src services/*/src)
STAMP := $(VENV)/.make-install.stamp
BENCH ?=
PYTEST_ARGS ?=

# uv from PATH, else from pip's user folder; installed there with pip when it is missing.
FIND_UV = uv="$$(command -v uv || true)"; \
	if [ -z "$$uv" ] && [ -x "$$(python3 -m site --user-base 2>/dev/null)/bin/uv" ]; then \
	  uv="$$(python3 -m site --user-base)/bin/uv"; fi; \
	if [ -z "$$uv" ]; then \
	  echo "uv not found: installing it with pip (--user)"; \
	  python3 -m pip install --user --quiet uv \
	    || python3 -m pip install --user --quiet --break-system-packages uv; \
	  uv="$$(python3 -m site --user-base)/bin/uv"; \
	fi

.PHONY: help install run up down status test test-unit bench lint fmt lock clean

help:
	@echo "make install    create .venv and install the locked dependencies and workspace members"
	@echo "make run        start PostgreSQL, Kafka and the services in the foreground (Ctrl-C stops all)"
	@echo "                and play the live demo (DEMO=0: no demo, DEMO=short: the test's scenario)"
	@echo "make up | down  the same in the background | stop it (make status: what runs)"
	@echo "make test       the whole test suite against the real stack (make test-unit: no servers)"
	@echo "make bench      benchmarks as JSON lines (make bench BENCH=<prefix>)"
	@echo "make lint | fmt | lock | clean"

install: $(STAMP)

$(STAMP): requirements.lock $(MEMBER_PYPROJECTS)
	@$(FIND_UV); \
	set -e; \
	if [ ! -x "$(PY)" ]; then "$$uv" venv "$(VENV)" --python 3.11; fi; \
	"$$uv" pip sync --python "$(PY)" requirements.lock; \
	"$$uv" pip install --python "$(PY)" --no-deps --no-build-isolation $(addprefix -e ,$(MEMBERS))
	@touch $@

run: install
	$(PY) -m devstack run

up: install
	$(PY) -m devstack up

down:
	@if [ -x "$(PY)" ]; then $(PY) -m devstack down; else echo "no $(VENV): nothing to stop"; fi

status:
	@if [ -x "$(PY)" ]; then $(PY) -m devstack status; else echo "no $(VENV): nothing runs"; fi

# The stack stays up afterwards (make down stops it). pytest's exit code is kept in
# .devstack/pytest-exit-code for .ci/run; exit code 5 (nothing collected) is a failure too.
# The stack's own migrator runs with automatic placement off under `make test`: it would consume
# every test's threshold events and move tenants other tests expect on shared. The placement tests
# start migrators of their own (tests/integration/placement).
test: install
	PLACEMENT_AUTO_ENABLED=false $(PY) -m devstack up
	@rc=0; $(VENV)/bin/pytest $(PYTEST_ARGS) || rc=$$?; \
	mkdir -p .devstack; echo $$rc > .devstack/pytest-exit-code; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit code 5)" >&2; fi; \
	exit $$rc

test-unit: install
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

# Benchmarks start the service processes they measure; the stack's own would only add noise.
# wrk drives the services benchmarks (a Python load generator saturates before the servers do).
bench: install
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends wrk </dev/null; \
	  else echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; fi; }
	DEVSTACK_SERVICES=none $(PY) -m devstack up
	DEVSTACK_SERVICES=none $(PY) -m bench $(BENCH)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(TYPED_SRC)

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lock:
	@$(FIND_UV); \
	"$$uv" pip compile requirements.in --generate-hashes --python-version 3.11 -o requirements.lock

clean: down
	rm -rf .devstack
