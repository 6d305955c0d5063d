"""A pytest plugin for `make mutants` (pyproject.toml, [tool.mutmut]): of the tests it is given,
it keeps those that start no server and no recorder.

mutmut runs the selected tests once, records which tests call each mutated function, then runs
only those against each mutant of it. A test that asks for a real Redis, S3 or ffmpeg would start
it again for every mutant (the session ends with each run): tens of seconds each, hours in all.
Such tests belong to `make test`; the decisions are checked here by the tests that call them
directly. Selecting by fixture rather than by file keeps the module list in pyproject.toml the
only list: a new decision module's unit tests are picked up without being named.

Tests that run ``python -m tailup`` in a subprocess stay: the subprocess runs the code unmutated
(see ``pytest_configure``), so they neither count as covering a function nor kill its mutants.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

# Fixtures of tests/conftest.py that start a process: a server, a cluster, or an ffmpeg recorder.
# The fixtures built on them (bucket, redis_url, s3_env, s3_client, moto_bucket, daemon_args...)
# have them in their closure, so these names catch them too.
PROCESS_FIXTURES = frozenset(
    {
        "s3_server",
        "least_privilege_s3",
        "least_privilege_moto",
        "moto_server",
        "redis_server",
        "redis_cluster",
        "redis_sentinel",
        "record",
    }
)


# Tests of the source's shape (module and class sizes, which modules import what): mutmut's copy
# of a module holds every mutant of it beside the original, so its shape is not the code's.
SHAPE_TESTS = ("tests/unit/test_layout.py", "tests/unit/test_dev_isolation.py")


def is_fast(fixture_names: Iterable[str], markers: Iterable[str]) -> bool:
    """Whether a test with these fixtures (its whole closure) and markers runs in-process only."""
    return not PROCESS_FIXTURES.intersection(fixture_names) and "slow" not in set(markers)


def is_about_shape(nodeid: str) -> bool:
    return nodeid.startswith(SHAPE_TESTS)


def pytest_configure(config: pytest.Config) -> None:
    # mutmut names the mutant under test in this variable and keeps a copy in its own module
    # state, which its trampolines read when the variable is absent. Without it, a child process
    # the tests start runs the original code; with it, mutmut's code in that child would try to
    # record its calls as the test's ("stats") and fail, a failure no mutant caused.
    name = os.environ.pop("MUTANT_UNDER_TEST", None)
    if name is not None:  # the same when the variable was set by hand, outside mutmut's runs
        from mutmut.mutation import trampoline

        trampoline._mutant_under_test = name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        names = getattr(item, "fixturenames", ())
        markers = (mark.name for mark in item.iter_markers())
        fast = is_fast(names, markers) and not is_about_shape(item.nodeid)
        (keep if fast else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # mutmut stops at the first failure (-x): the quickest tests first, so a mutant one of them
    # kills costs their time only, not that of the slow ones (tests/unit/test_plan.py's references
    # run 10 s and more with mutmut's trampolines on every call).
    duration_s = _durations_s(config.rootpath / "mutmut-stats.json")
    items[:] = sorted(keep, key=lambda item: duration_s.get(item.nodeid, 0.0))


def _durations_s(stats: Path) -> dict[str, float]:
    """The duration of each test in mutmut's first run (in its mutants/ folder, our rootdir)."""
    try:
        durations = json.loads(stats.read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}
    return {str(k): float(v) for k, v in durations.items()}
