"""The CLI runs of the tests (subprocesses through tests/daemonproc.py, and `cli.main` in this
process through harness.isolate_cli) do what their arguments say, whatever TAILUP_* variables
the developer has set and whatever .env file the checkout (the working folder) holds: tailup
reads both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemonproc import SRC, run_cli, run_cli_in_terminal, tailup_env
from harness import isolate_cli
from tailup import cli
from tailup.dev import RedisServer

# Each would refuse the run (exit 2): a bad value makes a leak impossible to miss.
DOTENV = "TAILUP_PART_SIZE=lots\n"
VARIABLE = ("TAILUP_CLOSE_GRACE", "never")


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder holds a bad .env, and the environment a bad TAILUP_ variable."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / ".env").write_text(DOTENV)
    monkeypatch.chdir(folder)
    monkeypatch.setenv(*VARIABLE)
    return folder


def _status(redis_server: RedisServer, key_prefix: str) -> list[str]:
    return ["status", "--json", "--redis-url", redis_server.url, "--redis-prefix", key_prefix]


def test_both_would_reach_a_run_that_is_not_isolated(
    checkout: Path, redis_server: RedisServer, key_prefix: str
) -> None:
    """The control: what the other tests keep out does reach tailup, each on its own."""
    status = [sys.executable, "-m", "tailup", *_status(redis_server, key_prefix)]
    # tailup_env also turns the .env file off (TAILUP_ENV_FILE=""): the control leaves it on.
    plain = {k: v for k, v in tailup_env({}).items() if k != "TAILUP_ENV_FILE"}
    with_variable = {**plain, VARIABLE[0]: VARIABLE[1]}
    runs = {
        "TAILUP_PART_SIZE": (plain, checkout),
        VARIABLE[0]: (with_variable, checkout.parent),
    }
    for name, (env, cwd) in runs.items():
        done = subprocess.run(status, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
        assert done.returncode == 2, done.stderr
        assert name in done.stderr
    assert cli.main(_status(redis_server, key_prefix)) == 2


def test_neither_reaches_the_cli_runs_of_the_tests(
    checkout: Path,
    redis_server: RedisServer,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _status(redis_server, key_prefix)
    done = run_cli(args, {})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    shown = run_cli_in_terminal(args, {}, columns=100)
    assert shown.returncode == 0, shown.stderr
    assert str(SRC) in tailup_env({})["PYTHONPATH"]

    isolate_cli(monkeypatch, tmp_path)
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out) == []
