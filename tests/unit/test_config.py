"""Settings: precedence (flag > env > .env > default), list parsing, and every refusal.

A refusal must name the flag, the environment variable and the accepted form, both from
``load_settings`` and from the real command line (exit code 2, no traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tailup.config import (
    AfterUploadKind,
    check_daemon_settings,
    check_storage_settings,
    load_settings,
    parse_after_upload,
)
from tailup.errors import ConfigError

MIB = 1024 * 1024
GIB = 1024 * MIB
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TAILUP_ variable from the outside, and a working folder without a .env file."""
    for name in list(os.environ):
        if name.upper().startswith("TAILUP_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write_dotenv(folder: Path, **values: str) -> None:
    lines = [f"TAILUP_{name.upper()}={value}" for name, value in values.items()]
    (folder / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- precedence --


@pytest.mark.parametrize(
    ("dotenv", "env", "flag", "expected"),
    [
        (None, None, None, 8 * MIB),  # the default
        ("16MiB", None, None, 16 * MIB),  # .env over the default
        ("16MiB", "32MiB", None, 32 * MIB),  # env over .env
        (None, "32MiB", None, 32 * MIB),
        ("16MiB", "32MiB", "64MiB", 64 * MIB),  # flag over env and .env
        ("16MiB", None, "64MiB", 64 * MIB),
        (None, "32MiB", "64MiB", 64 * MIB),
    ],
)
def test_precedence_flag_env_dotenv_default(
    clean_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    dotenv: str | None,
    env: str | None,
    flag: str | None,
    expected: int,
) -> None:
    if dotenv is not None:
        write_dotenv(clean_environment, part_size=dotenv)
    if env is not None:
        monkeypatch.setenv("TAILUP_PART_SIZE", env)
    overrides = {"part_size": flag} if flag is not None else {}
    assert load_settings(overrides).part_size == expected


def test_flag_given_as_none_means_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # argparse leaves unset flags as None: they must not hide the environment.
    monkeypatch.setenv("TAILUP_BUCKET", "from-env")
    monkeypatch.setenv("TAILUP_IDLE_TIMEOUT", "2m")
    settings = load_settings({"bucket": None, "idle_timeout": None})
    assert settings.bucket == "from-env"
    assert settings.idle_timeout == 120.0


def test_every_source_reaches_its_own_setting(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dotenv(clean_environment, bucket="dotenv-bucket", region="eu-west-1", prefix="p1")
    monkeypatch.setenv("TAILUP_REGION", "us-west-2")
    monkeypatch.setenv("TAILUP_PREFIX", "p2")
    settings = load_settings({"prefix": "p3"})
    assert (settings.bucket, settings.region, settings.prefix) == (
        "dotenv-bucket",
        "us-west-2",
        "p3",
    )


# -- lists --


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*.mp4,*.mkv", ["*.mp4", "*.mkv"]),
        ("*.mp4, *.mkv", ["*.mp4", "*.mkv"]),
        ("*.mp4 *.mkv *.ts", ["*.mp4", "*.mkv", "*.ts"]),
        ("*.mp4", ["*.mp4"]),
        (" *.mp4 , ", ["*.mp4"]),
    ],
)
def test_include_list_from_env(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: list[str]
) -> None:
    monkeypatch.setenv("TAILUP_INCLUDE", text)
    assert load_settings({}).include == expected


def test_watch_list_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILUP_WATCH", "a,b")
    assert load_settings({}).watch == [Path("a"), Path("b")]


def test_watch_folder_names_with_spaces_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILUP_WATCH", "/mnt/NVR Recordings, /srv/cam 2")
    assert load_settings({}).watch == [Path("/mnt/NVR Recordings"), Path("/srv/cam 2")]


def test_watch_list_from_dotenv(clean_environment: Path) -> None:
    write_dotenv(clean_environment, watch="/srv/cam1,/srv/cam2")
    assert load_settings({}).watch == [Path("/srv/cam1"), Path("/srv/cam2")]


def test_list_flags_are_taken_as_lists() -> None:
    settings = load_settings({"watch": ["x", "y"], "include": ["*.mov"]})
    assert settings.watch == [Path("x"), Path("y")]
    assert settings.include == ["*.mov"]


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.part_size == 8 * MIB
    assert settings.key_template == "streams/{stream_id}/{name}"
    assert set(settings.include) == {"*.mp4", "*.mov", "*.mkv", "*.ts", "*.m4v", "*.flv"}
    assert settings.after_upload_action == (AfterUploadKind.KEEP, None)


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"part_size": "5MiB"}, "part_size", 5 * MIB),
        ({"part_size": "5GiB"}, "part_size", 5 * GIB),
        ({"part_size": "16M"}, "part_size", 16 * MIB),
        ({"idle_timeout": "90s"}, "idle_timeout", 90.0),
        ({"idle_timeout": "0.5"}, "idle_timeout", 0.5),
        ({"close_grace": "0"}, "close_grace", 0.0),
        ({"max_inflight_bytes": "1GiB"}, "max_inflight_bytes", GIB),
        ({"key_template": "{date}/{relpath}"}, "key_template", "{date}/{relpath}"),
        ({"after_upload": "move:/archive"}, "after_upload", "move:/archive"),
        ({"log_level": "DEBUG"}, "log_level", "debug"),
    ],
)
def test_accepted_values(overrides: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(load_settings(overrides), field) == expected


# -- refusals --

PART_SIZE = ("--part-size", "TAILUP_PART_SIZE", "8MiB")
IDLE_TIMEOUT = ("--idle-timeout", "TAILUP_IDLE_TIMEOUT", "seconds")
CLOSE_GRACE = ("--close-grace", "TAILUP_CLOSE_GRACE", "seconds")
KEY_TEMPLATE = ("--key-template", "TAILUP_KEY_TEMPLATE", "{stream_id}")
AFTER_UPLOAD = ("--after-upload", "TAILUP_AFTER_UPLOAD", "move:DIR")
CONCURRENCY = ("--part-concurrency", "TAILUP_PART_CONCURRENCY", "1 to 64")
INFLIGHT = ("--max-inflight-bytes", "TAILUP_MAX_INFLIGHT_BYTES", "5MiB")
METRICS_PORT = ("--metrics-port", "TAILUP_METRICS_PORT", "65535")
LOG_LEVEL = ("--log-level", "TAILUP_LOG_LEVEL", "warning")
INCLUDE = ("--include", "TAILUP_INCLUDE", "*.mp4")


@pytest.mark.parametrize(
    ("overrides", "names", "extra"),
    [
        ({"part_size": "4MiB"}, PART_SIZE, "4MiB"),
        ({"part_size": "6GiB"}, PART_SIZE, "6GiB"),
        ({"part_size": "5GiB1"}, PART_SIZE, "5GiB1"),
        ({"part_size": "8 parsecs"}, PART_SIZE, "parsecs"),
        ({"part_size": "-1MiB"}, PART_SIZE, "-1MiB"),
        ({"idle_timeout": "0"}, IDLE_TIMEOUT, "above 0"),
        ({"idle_timeout": "-1"}, IDLE_TIMEOUT, "-1"),
        ({"idle_timeout": "soon"}, IDLE_TIMEOUT, "soon"),
        ({"close_grace": "-1"}, CLOSE_GRACE, "-1"),
        ({"key_template": "x/{bogus}/{name}"}, KEY_TEMPLATE, "{bogus}"),
        ({"key_template": "x/{Name}"}, KEY_TEMPLATE, "{Name}"),
        ({"key_template": "x/{name"}, KEY_TEMPLATE, "x/{name"),
        ({"key_template": "{date}/{time}.mp4"}, KEY_TEMPLATE, "names no file"),
        ({"after_upload": "archive"}, AFTER_UPLOAD, "archive"),
        ({"after_upload": "move"}, AFTER_UPLOAD, "'move'"),
        ({"after_upload": "move:"}, AFTER_UPLOAD, "'move:'"),
        ({"after_upload": "keep:/x"}, AFTER_UPLOAD, "keep:/x"),
        ({"after_upload": "DELETE"}, AFTER_UPLOAD, "DELETE"),
        ({"part_concurrency": 0}, CONCURRENCY, "0"),
        ({"part_concurrency": 65}, CONCURRENCY, "65"),
        ({"max_inflight_bytes": "1MiB"}, INFLIGHT, "1MiB"),
        ({"metrics_port": 70000}, METRICS_PORT, "70000"),
        ({"log_level": "loud"}, LOG_LEVEL, "loud"),
        ({"include": ""}, INCLUDE, "no pattern"),
    ],
)
def test_refusal_names_flag_env_var_and_accepted_form(
    overrides: dict[str, Any], names: tuple[str, str, str], extra: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides)
    message = str(info.value)
    flag, env_var, form = names
    assert flag in message
    assert env_var in message
    assert "Accepted" in message
    assert form in message
    assert extra in message


@pytest.mark.parametrize(
    ("env_var", "value", "flag"),
    [
        ("TAILUP_PART_SIZE", "4MiB", "--part-size"),
        ("TAILUP_PART_SIZE", "6GiB", "--part-size"),
        ("TAILUP_IDLE_TIMEOUT", "0", "--idle-timeout"),
        ("TAILUP_KEY_TEMPLATE", "{nope}/{name}", "--key-template"),
        ("TAILUP_AFTER_UPLOAD", "shred", "--after-upload"),
    ],
)
def test_refusal_from_env(
    monkeypatch: pytest.MonkeyPatch, env_var: str, value: str, flag: str
) -> None:
    monkeypatch.setenv(env_var, value)
    with pytest.raises(ConfigError) as info:
        load_settings({})
    message = str(info.value)
    assert flag in message
    assert env_var in message
    assert value in message


def test_refusal_from_dotenv(clean_environment: Path) -> None:
    write_dotenv(clean_environment, part_size="4MiB")
    with pytest.raises(ConfigError, match="TAILUP_PART_SIZE"):
        load_settings({})


def test_several_refusals_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"part_size": "4MiB", "idle_timeout": "0", "after_upload": "x"})
    message = str(info.value)
    for flag in ("--part-size", "--idle-timeout", "--after-upload"):
        assert flag in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("keep", (AfterUploadKind.KEEP, None)),
        ("delete", (AfterUploadKind.DELETE, None)),
        ("move:/archive", (AfterUploadKind.MOVE, Path("/archive"))),
        ("move:done", (AfterUploadKind.MOVE, Path("done"))),
        ("move:/a:b", (AfterUploadKind.MOVE, Path("/a:b"))),
    ],
)
def test_parse_after_upload(text: str, expected: tuple[AfterUploadKind, Path | None]) -> None:
    assert parse_after_upload(text) == expected


# -- what `run` needs beyond the shared settings --


def daemon_problem(**overrides: Any) -> str:
    settings = load_settings(overrides)
    with pytest.raises(ConfigError) as info:
        check_daemon_settings(settings)
    return str(info.value)


def test_daemon_needs_a_bucket(tmp_path: Path) -> None:
    message = daemon_problem(watch=[str(tmp_path)])
    assert "--bucket" in message
    assert "TAILUP_BUCKET" in message
    assert "bucket name" in message


def test_storage_commands_need_a_bucket() -> None:
    with pytest.raises(ConfigError) as info:
        check_storage_settings(load_settings({}))
    assert "--bucket" in str(info.value)
    assert "TAILUP_BUCKET" in str(info.value)


@pytest.mark.parametrize("case", ["none", "missing", "file"])
def test_daemon_watch_folder_must_be_an_existing_folder(tmp_path: Path, case: str) -> None:
    a_file = tmp_path / "recording.mp4"
    a_file.write_bytes(b"x")
    watch = {"none": [], "missing": [str(tmp_path / "nope")], "file": [str(a_file)]}[case]
    message = daemon_problem(watch=watch, bucket="b")
    assert "--watch" in message
    assert "TAILUP_WATCH" in message
    assert "existing folder" in message  # the accepted form
    if case != "none":
        assert watch[0] in message


def test_daemon_settings_accepted(tmp_path: Path) -> None:
    check_daemon_settings(load_settings({"watch": [str(tmp_path)], "bucket": "b"}))


def test_daemon_reports_every_problem_at_once(tmp_path: Path) -> None:
    message = daemon_problem(watch=[str(tmp_path / "nope")])
    assert "--watch" in message
    assert "--bucket" in message


# -- the command line --


CLI_CASES: list[tuple[str, list[str], dict[str, str], list[str]]] = [
    ("part-size-4MiB", ["--part-size", "4MiB"], {}, ["--part-size", "TAILUP_PART_SIZE", "5MiB"]),
    ("part-size-6GiB", ["--part-size", "6GiB"], {}, ["--part-size", "TAILUP_PART_SIZE", "5GiB"]),
    ("env-part-size", [], {"TAILUP_PART_SIZE": "6GiB"}, ["--part-size", "TAILUP_PART_SIZE"]),
    ("idle-0", ["--idle-timeout", "0"], {}, ["--idle-timeout", "TAILUP_IDLE_TIMEOUT", "seconds"]),
    ("idle-neg", ["--idle-timeout", "-1"], {}, ["--idle-timeout", "TAILUP_IDLE_TIMEOUT"]),
    ("template", ["--key-template", "a/{oops}/{name}"], {}, ["--key-template", "{oops}"]),
    ("after-upload", ["--after-upload", "archive"], {}, ["--after-upload", "move:DIR"]),
    ("no-bucket", ["--bucket", ""], {}, ["--bucket", "TAILUP_BUCKET", "bucket name"]),
    (
        "watch-missing",
        ["--watch", "does-not-exist"],
        {},
        ["--watch", "TAILUP_WATCH", "does-not-exist", "existing folder"],
    ),
    (
        "watch-file",
        ["--watch", "a-file.mp4"],
        {},
        ["--watch", "TAILUP_WATCH", "not a folder", "existing folder"],
    ),
    ("port-not-int", ["--metrics-port", "eighty"], {}, ["--metrics-port", "eighty"]),
    ("log-format", ["--log-format", "xml"], {}, ["--log-format", "xml"]),
]


@pytest.fixture(scope="module")
def cli_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[int, str, str]]:
    """Run every case of ``CLI_CASES`` as a real `python -m tailup run`, all at once (fast)."""
    base_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TAILUP_")}
    base_env["PYTHONPATH"] = str(SRC)
    procs = {}
    for case_id, flags, env, _ in CLI_CASES:
        work = tmp_path_factory.mktemp(f"cli-{case_id}")
        watched = work / "watched"
        watched.mkdir()
        (work / "a-file.mp4").write_bytes(b"")
        # Good values for everything else, so only the setting under test is wrong.
        args = ["run", "--redis-url", "redis://127.0.0.1:1"]
        if "--watch" not in flags:
            args += ["--watch", str(watched)]
        if "--bucket" not in flags:
            args += ["--bucket", "b"]
        procs[case_id] = subprocess.Popen(
            [sys.executable, "-m", "tailup", *args, *flags],
            cwd=work,
            env={**base_env, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for case_id, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[case_id] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize(
    ("case_id", "names"), [(case[0], case[3]) for case in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_run_refuses_bad_settings_with_exit_code_2(
    cli_results: dict[str, tuple[int, str, str]], case_id: str, names: list[str]
) -> None:
    returncode, stdout, stderr = cli_results[case_id]
    assert returncode == 2, stderr
    for name in names:
        assert name in stderr
    assert "Traceback" not in stderr
    assert "Traceback" not in stdout
