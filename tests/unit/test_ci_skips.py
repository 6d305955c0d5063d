"""Under CI=true a skip fails the run unless tests/conftest.py allows it (the hook is run here on
a small suite of its own, in this process)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
SUITE = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("a tool is missing")

@pytest.mark.skipif(True, reason="not here")
def test_skipped_by_mark():
    pass

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    raise AssertionError
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_suite=SUITE)
    return pytester


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skip_is_a_failure(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    result = suite.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)
    result.stdout.fnmatch_lines(["*skipped under CI=true (*a tool is missing*CI_ALLOWED_SKIPS*"])


def test_outside_ci_a_skip_is_shown_and_passes(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["SKIPPED *a tool is missing*"])


def test_an_allowed_skip_stays_a_skip_under_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    allowed = CONFTEST.read_text(encoding="utf-8").replace(
        "CI_ALLOWED_SKIPS: dict[str, str] = {",
        'CI_ALLOWED_SKIPS: dict[str, str] = {\n    "test_suite.py::test_skips": "allowed",',
    )
    suite.makeconftest(allowed)
    result = suite.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1, errors=1, xfailed=1)
