"""`make mutants`: the report of scripts/mutants_report.py (rates per module, the mutants not
killed) and the choice of tests in tests/mutmut_fast.py."""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from mutmut_fast import PROCESS_FIXTURES, _durations_s, is_about_shape, is_fast

ROOT = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "mutants_report", ROOT / "scripts" / "mutants_report.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


report_script = _load_script()


@pytest.mark.parametrize(
    ("path", "module"),
    [
        ("src/tailup/plan.py", "tailup.plan"),
        ("src/tailup/rules/admission.py", "tailup.rules.admission"),
        ("src/tailup/rules/__init__.py", "tailup.rules"),
    ],
)
def test_module_of(path: str, module: str) -> None:
    assert report_script.module_of(path) == module


def test_rate_counts_timeouts_and_type_checks_as_killed_and_leaves_skipped_out() -> None:
    rate = report_script.rate(
        "tailup.x",
        {
            "tailup.x.x_f__mutmut_1": "killed",
            "tailup.x.x_f__mutmut_2": "timeout",
            "tailup.x.x_f__mutmut_3": "caught by type check",
            "tailup.x.x_f__mutmut_4": "skipped",
            "tailup.x.x_f__mutmut_10": "survived",
            "tailup.x.x_f__mutmut_9": "no tests",
        },
    )
    assert (rate.killed, rate.counted) == (3, 5)
    assert rate.percent == pytest.approx(60.0)
    # By number, not as text: 9 before 10.
    assert rate.not_killed == (
        ("tailup.x.x_f__mutmut_9", "no tests"),
        ("tailup.x.x_f__mutmut_10", "survived"),
    )


def test_a_module_without_mutants_is_not_a_failure() -> None:
    assert report_script.rate("tailup.empty", {}).percent == 100.0


def test_report_lists_the_survivors_then_a_rate_per_module_and_in_all() -> None:
    rates = [
        report_script.rate("tailup.a", {"tailup.a.x_f__mutmut_1": "killed"}),
        report_script.rate(
            "tailup.bb",
            {"tailup.bb.x_g__mutmut_1": "killed", "tailup.bb.x_g__mutmut_2": "survived"},
        ),
    ]
    lines = report_script.report(rates).splitlines()
    assert lines[0].startswith("Not killed")
    assert lines[1].split() == ["survived", "tailup.bb.x_g__mutmut_2"]
    table = [line.split() for line in lines[lines.index("") + 1 :]]
    assert table == [
        ["module", "killed", "of", "rate"],
        ["tailup.a", "1", "1", "100.0%"],
        ["tailup.bb", "1", "2", "50.0%"],
        ["all", "2", "3", "66.7%"],
    ]


def test_load_rates_reads_the_modules_pyproject_names(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutmut]\nonly_mutate = ["src/tailup/a.py", "src/tailup/b.py"]\n'
    )
    meta = tmp_path / "mutants" / "src" / "tailup"
    meta.mkdir(parents=True)
    codes = {"tailup.a.x_f__mutmut_1": 1, "tailup.a.x_f__mutmut_2": 0}
    (meta / "a.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    (meta / "b.py.meta").write_text(json.dumps({"exit_code_by_key": {}}))
    status = {1: "killed", 0: "survived"}
    rates = report_script.load_rates(tmp_path, lambda code: status[code])
    assert [(r.module, r.killed, r.counted) for r in rates] == [
        ("tailup.a", 1, 2),
        ("tailup.b", 0, 0),
    ]
    (meta / "b.py.meta").unlink()
    with pytest.raises(SystemExit, match=r"b\.py\.meta is missing"):
        report_script.load_rates(tmp_path, lambda code: status[code])


def test_the_modules_are_named_once_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert "src/tailup/identity.py" in config["only_mutate"]
    for path in config["only_mutate"]:
        assert (ROOT / path).is_file(), path


@pytest.mark.parametrize(
    ("fixtures", "markers", "fast"),
    [
        (["tmp_path", "monkeypatch"], [], True),
        ([], ["parametrize"], True),
        (["redis_url", "redis_server"], [], False),  # a fixture built on a server: its closure
        (["bucket", "s3_server"], [], False),
        (["record"], [], False),
        (["tmp_path"], ["slow"], False),
    ],
)
def test_only_tests_that_start_no_process_are_kept(
    fixtures: list[str], markers: list[str], fast: bool
) -> None:
    assert is_fast(fixtures, markers) is fast


def test_every_process_fixture_is_one_of_conftest() -> None:
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    for name in PROCESS_FIXTURES:
        assert f"def {name}(" in conftest, name


def test_durations_come_from_mutmuts_first_run(tmp_path: Path) -> None:
    stats = tmp_path / "mutmut-stats.json"
    assert _durations_s(stats) == {}  # before its first run: the collected order stays
    stats.write_text(json.dumps({"duration_by_test": {"t.py::a": 2.5, "t.py::b": 0.1}}))
    assert _durations_s(stats) == {"t.py::a": 2.5, "t.py::b": 0.1}
    stats.write_text("{")
    assert _durations_s(stats) == {}


@pytest.mark.parametrize(
    ("nodeid", "about_shape"),
    [
        ("tests/unit/test_layout.py::test_no_module_is_over_its_size", True),
        ("tests/unit/test_dev_isolation.py::test_the_daemon_loads_no_dev_module", True),
        ("tests/unit/test_admission.py::test_rows[a new file]", False),
        ("tests/unit/test_layout_of_keys.py::test_x", False),
    ],
)
def test_tests_of_the_sources_shape_are_left_to_make_test(nodeid: str, about_shape: bool) -> None:
    """mutmut's copy of a module holds every mutant beside the original: its size and imports
    are not the code's, so the layout tests would fail every mutmut run."""
    assert is_about_shape(nodeid) is about_shape
