# tailup developer tasks. `make test` is what CI runs (.ci/run).
VENV ?= .venv
PY = $(VENV)/bin/python

# The first interpreter >= 3.11 among these (pyenv shims of absent versions fail the check).
PYTHON_CANDIDATES ?= python3.13 python3.12 python3.11 python3
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo "$$p"; break; }; \
	done)
endif

.DEFAULT_GOAL := test
.PHONY: install test test-tools lint crash-trials demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if ! command -v redis-server >/dev/null 2>&1; then \
		echo "redis-server not found: installing it with apt-get"; \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
	fi
	@command -v redis-server >/dev/null 2>&1 || { echo "error: redis-server is still missing" >&2; exit 1; }
	@if [ ! -x "$(PY)" ]; then \
		if [ -z "$(PYTHON)" ]; then \
			echo "error: Python >= 3.11 is required; none of $(PYTHON_CANDIDATES) is" >&2; exit 1; \
		fi; \
		echo "creating $(VENV) with $$(command -v $(PYTHON)) ($$($(PYTHON) --version 2>&1))"; \
		"$(PYTHON)" -m venv "$(VENV)"; \
	fi
	@"$(PY)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: $(VENV) has Python $$($(PY) --version 2>&1), tailup needs >= 3.11: make clean" >&2; \
		exit 1; }
	"$(PY)" -m pip install -e '.[dev]'
	touch "$@"

$(VENV)/.installed-bench: $(VENV)/.installed
	"$(PY)" -m pip install -e '.[dev,bench]'
	touch "$@"

lint: $(VENV)/.installed
	"$(PY)" -m ruff check src tests bench
	"$(PY)" -m mypy

# promtool checks deploy/prometheus-alerts.yml in the tests. Debian ships it only in the prometheus
# server package, so it is installed here, for the tests alone (never by `make install` or
# `make demo`), with a policy-rc.d that refuses every service start while apt runs: no Prometheus
# server is started or left running. `make test` stops if promtool cannot be had.
POLICY_RC_D = /usr/sbin/policy-rc.d
test-tools:
	@if ! command -v promtool >/dev/null 2>&1; then \
		echo "promtool not found: installing Debian's prometheus package for it (no service starts)"; \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		made=; \
		if [ ! -e "$(POLICY_RC_D)" ]; then \
			printf '#!/bin/sh\n# make test-tools: no service starts while apt installs\nexit 101\n' \
				| $$SUDO tee "$(POLICY_RC_D)" >/dev/null && $$SUDO chmod 755 "$(POLICY_RC_D)" && made=1; \
		fi; \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
		status=$$?; \
		[ -z "$$made" ] || $$SUDO rm -f "$(POLICY_RC_D)"; \
		[ "$$status" -eq 0 ] || { echo "error: promtool could not be installed (apt-get install prometheus)" >&2; exit 1; }; \
	fi
	@command -v promtool >/dev/null 2>&1 || { echo "error: promtool is still missing" >&2; exit 1; }

test: lint test-tools
	"$(PY)" -m pytest -q -rs

# The kill -9 trials with more trials than CI runs (3); TAILUP_CRASH_SEED=N repeats a run.
TRIALS ?= 20
crash-trials: $(VENV)/.installed
	TAILUP_CRASH_TRIALS=$(TRIALS) "$(PY)" -m pytest -q -s -k kill_9 tests/e2e/test_crash.py

demo: $(VENV)/.installed
	"$(PY)" -m tailup demo

bench: $(VENV)/.installed-bench
	"$(PY)" bench/run.py

clean:
	rm -rf "$(VENV)" .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
