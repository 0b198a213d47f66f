# dte-trader: two commands for a newcomer: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null)
DATE ?= 2026-11-27
SEED ?= 21

.PHONY: demo test lint types imports pytest bench lock venv venv-bench clean deploy server worker

# Bootstrap uv (from PyPI) if missing, then create .venv from the hashed lock.
$(VENV)/.synced-%: requirements/%.lock
	@if ! command -v uv >/dev/null 2>&1; then \
	  echo "uv not found: installing it from PyPI"; $(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv; fi
	@UVBIN=$$(command -v uv || echo "$$($(PYTHON) -m site --user-base)/bin/uv"); \
	  [ -x $(PY) ] || $$UVBIN venv --quiet --python $(PYTHON) $(VENV); \
	  $$UVBIN pip sync --quiet --python $(PY) --require-hashes requirements/$*.lock && \
	  $$UVBIN pip install --quiet --python $(PY) --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.synced-*; touch $@

venv: $(VENV)/.synced-dev

# Benchmark peers (requirements/bench.in) live in their own venv so the dev venv stays as locked.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
$(BENCH_VENV)/.synced: requirements/bench.lock
	@UVBIN=$$(command -v uv || echo "$$($(PYTHON) -m site --user-base)/bin/uv"); \
	  if ! [ -x "$$UVBIN" ]; then $(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv; \
	    UVBIN=$$(command -v uv || echo "$$($(PYTHON) -m site --user-base)/bin/uv"); fi; \
	  [ -x $(BENCH_PY) ] || $$UVBIN venv --quiet --python $(PYTHON) $(BENCH_VENV); \
	  $$UVBIN pip sync --quiet --python $(BENCH_PY) --require-hashes requirements/bench.lock && \
	  $$UVBIN pip install --quiet --python $(BENCH_PY) --no-deps --no-build-isolation -e .
	@touch $@

venv-bench: $(BENCH_VENV)/.synced

demo: venv
	$(VENV)/bin/dte demo --date $(DATE) --seed $(SEED)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

pytest: venv
	$(VENV)/bin/pytest -q

test: lint types imports pytest

# Prefect on this machine (README "Deployments"): `make server` and `make worker` in two terminals
# (on a host: deployments/systemd/), then `make deploy`. UI: http://127.0.0.1:4200
NOTRACK := DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
LOCAL_API := http://127.0.0.1:4200/api

deploy: venv
	VENV=$(VENV) deployments/deploy.sh

server: venv
	$(NOTRACK) PREFECT_HOME=$(CURDIR)/var/prefect-server \
	  $(VENV)/bin/prefect server start --host 127.0.0.1 --port 4200 --analytics-off

worker: venv
	$(NOTRACK) PREFECT_API_URL=$${PREFECT_API_URL:-$(LOCAL_API)} DTE_HOME=$(CURDIR) \
	  $(VENV)/bin/prefect worker start --pool dte-process

# Scripts that print (best-of timings and ratios against the peers), never tests: README "Performance".
# Each script sets one thread per library itself; pricing.py also pins itself to one CPU.
bench: venv-bench
	$(BENCH_PY) bench/pricing.py
	$(BENCH_PY) bench/backtest.py
	$(BENCH_PY) bench/loop.py

# Re-pin after editing requirements/*.in (hashes, no registry URLs, never uv.lock).
lock:
	uv pip compile --quiet --python-version 3.11 --generate-hashes requirements/runtime.in -o requirements/runtime.lock
	uv pip compile --quiet --python-version 3.11 --generate-hashes requirements/dev.in -o requirements/dev.lock
	uv pip compile --quiet --python-version 3.11 --generate-hashes requirements/bench.in -o requirements/bench.lock

clean:
	rm -rf var reports .mypy_cache .ruff_cache .pytest_cache
