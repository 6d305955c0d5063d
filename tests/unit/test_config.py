"""Settings: precedence (flag > env > .env > default), list parsing, and every refusal.

A refusal must name the flag, the environment variable and the accepted form, both from
``load_settings`` and from the real command line (exit code 2, no traceback). Unknown TAILUP_
variables are warned about, not refused.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tailup.cli import build_parser, main
from tailup.config import (
    OTHER_VARIABLES,
    AfterUploadKind,
    Settings,
    check_daemon_settings,
    check_storage_settings,
    dotenv_file,
    load_settings,
    parse_after_upload,
    unknown_variables,
)
from tailup.errors import ConfigError

MIB = 1024 * 1024
GIB = 1024 * MIB
ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


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


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Path(".env")),  # the working directory's, as always
        ({"TAILUP_ENV_FILE": "/etc/tailup/env"}, Path("/etc/tailup/env")),
        ({"TAILUP_ENV_FILE": ""}, None),  # none: how tests keep a developer's .env out
    ],
)
def test_dotenv_file(environ: dict[str, str], expected: Path | None) -> None:
    assert dotenv_file(environ) == expected


def test_an_empty_tailup_env_file_turns_the_dotenv_file_off(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dotenv(clean_environment, bucket="dotenv-bucket", part_siz="8MiB")
    assert load_settings({}).bucket == "dotenv-bucket"
    monkeypatch.setenv("TAILUP_ENV_FILE", "")
    assert load_settings({}).bucket == ""
    assert main(["gc", "--older-than", "1h"]) == 2  # no bucket: refused before any work
    assert "warning" not in capsys.readouterr().err  # nor is the .env's typo read


def test_tailup_env_file_names_the_dotenv_file(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dotenv(clean_environment, bucket="here")
    elsewhere = clean_environment.parent / "elsewhere"
    elsewhere.mkdir()
    write_dotenv(elsewhere, bucket="there", part_size="1MiB", part_siz="8MiB")
    monkeypatch.setenv("TAILUP_ENV_FILE", str(elsewhere / ".env"))
    assert main(["gc", "--older-than", "1h"]) == 2
    err = capsys.readouterr().err
    assert f"TAILUP_PART_SIZ in {elsewhere / '.env'} is not a tailup setting" in err
    assert "--part-size (TAILUP_PART_SIZE): got '1MiB'" in err


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
    # Peak RSS is ~115 MiB plus this budget: 100 live streams stay under 300 MiB (bench c).
    assert settings.max_inflight_bytes == 160 * MIB
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
        ({"after_upload": "move:done"}, AFTER_UPLOAD, "'done' in 'move:done' is a relative path"),
        ({"after_upload": "move:./done"}, AFTER_UPLOAD, "must be absolute"),
        ({"after_upload": "move:~/done"}, AFTER_UPLOAD, "must be absolute"),  # no ~ expansion
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


@pytest.mark.parametrize(
    ("part_size", "budget", "accepted"),
    [("8MiB", "160MiB", True), ("8MiB", "8MiB", True), ("256MiB", "160MiB", False)],
)
def test_daemon_budget_holds_at_least_one_part(
    tmp_path: Path, part_size: str, budget: str, accepted: bool
) -> None:
    settings = {"part_size": part_size, "max_inflight_bytes": budget}
    if accepted:
        check_daemon_settings(load_settings({"watch": [str(tmp_path)], "bucket": "b", **settings}))
        return
    message = daemon_problem(watch=[str(tmp_path)], bucket="b", **settings)
    assert "--max-inflight-bytes (TAILUP_MAX_INFLIGHT_BYTES): 160.0 MiB is smaller" in message
    assert "(--part-size (TAILUP_PART_SIZE) 256.0 MiB)" in message
    assert "Accepted: at least the part size" in message


def test_daemon_settings_accepted(tmp_path: Path) -> None:
    check_daemon_settings(load_settings({"watch": [str(tmp_path)], "bucket": "b"}))


def test_daemon_reports_every_problem_at_once(tmp_path: Path) -> None:
    message = daemon_problem(watch=[str(tmp_path / "nope")])
    assert "--watch" in message
    assert "--bucket" in message


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """tmp/a, tmp/a/sub, tmp/a-2 (a name prefix of nothing), tmp/b, tmp/c, and links to a and
    to a/done."""
    for name in ("a", "a/sub", "a/done", "a-2", "b", "c"):
        (tmp_path / name).mkdir()
    (tmp_path / "link-to-a").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "link-to-a-done").symlink_to(tmp_path / "a" / "done", target_is_directory=True)
    return tmp_path


WATCH_NAMES = ["--watch", "TAILUP_WATCH", "none inside another"]
MOVE_NAMES = ["--after-upload", "TAILUP_AFTER_UPLOAD", "uploaded again", "outside every watched"]


@pytest.mark.parametrize(
    ("watch", "after_upload", "expected"),
    [
        (["a", "a"], "keep", [*WATCH_NAMES, "are the same folder"]),
        (["a", "a/sub/.."], "keep", [*WATCH_NAMES, "a/sub/..", "are the same folder"]),
        (["a", "link-to-a"], "keep", [*WATCH_NAMES, "link-to-a", "are the same folder"]),
        (["a", "a/sub"], "keep", [*WATCH_NAMES, "overlap", "a/sub' is inside", "twice"]),
        (["a/sub", "b", "a"], "keep", [*WATCH_NAMES, "a/sub' is inside"]),
        (["link-to-a/sub", "a"], "keep", [*WATCH_NAMES, "link-to-a/sub' is inside"]),
        (["a"], "move:{tmp}/a", [*MOVE_NAMES, "is the watched folder"]),
        (["a"], "move:{tmp}/a/done", [*MOVE_NAMES, "is inside the watched folder"]),
        (["a"], "move:{tmp}/a/not/yet/made", [*MOVE_NAMES, "is inside the watched folder"]),
        (["b", "a"], "move:{tmp}/a/done", [*MOVE_NAMES, "is inside the watched folder"]),
        (["a"], "move:{tmp}/link-to-a-done", [*MOVE_NAMES, "link-to-a-done"]),
        (["a"], "move:{tmp}/b/../a/done", [*MOVE_NAMES, "b/../a/done"]),
        (["link-to-a"], "move:{tmp}/a/done", [*MOVE_NAMES, "link-to-a"]),
    ],
)
def test_daemon_refuses_overlapping_folders(
    folders: Path, watch: list[str], after_upload: str, expected: list[str]
) -> None:
    message = daemon_problem(
        watch=[str(folders / name) for name in watch],
        after_upload=after_upload.format(tmp=folders),
        bucket="b",
    )
    for text in expected:
        assert text in message
    assert "Accepted:" in message


@pytest.mark.parametrize(
    ("watch", "after_upload"),
    [
        (["a", "b"], "keep"),
        (["a", "a-2"], "keep"),  # a name prefix is not a parent folder
        (["a/sub", "a/done"], "keep"),
        (["a", "b"], "move:{tmp}/c"),
        (["a"], "move:{tmp}/a-2"),
        (["a/sub"], "move:{tmp}/a/done"),  # beside the watched folder, not in it
        (["a"], "move:{tmp}"),  # a parent: files move out of the watched folder
        (["a"], "delete"),
    ],
)
def test_daemon_accepts_folders_that_do_not_overlap(
    folders: Path, watch: list[str], after_upload: str
) -> None:
    settings = load_settings(
        {
            "watch": [str(folders / name) for name in watch],
            "after_upload": after_upload.format(tmp=folders),
            "bucket": "b",
        }
    )
    check_daemon_settings(settings)


def test_overlap_refusal_names_the_config_file_key(folders: Path) -> None:
    config = folders / "tailup.toml"
    config.write_text(
        f'watch = ["{folders / "a"}"]\nafter_upload = "move:{folders / "a" / "done"}"\n'
        'bucket = "b"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        check_daemon_settings(load_settings({}, config))
    message = str(info.value)
    assert f"after_upload in {config}" in message
    assert f"watch in {config}" in message


# -- unknown TAILUP_ variables: a warning, not a refusal --


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"TAILUP_PART_SIZ": "8MiB"}, ["TAILUP_PART_SIZ in the environment", "TAILUP_PART_SIZE?"]),
        ({"TAILUP_BUKCET": "b"}, ["TAILUP_BUKCET", "did you mean TAILUP_BUCKET?"]),
        ({"tailup_regoin": "x"}, ["tailup_regoin", "did you mean TAILUP_REGION?"]),
        ({"TAILUP_WATCH_DIRS": "/x"}, ["TAILUP_WATCH_DIRS", "did you mean TAILUP_WATCH"]),
        ({"TAILUP_CONFG": "x.toml"}, ["TAILUP_CONFG", "did you mean TAILUP_CONFIG?"]),
        ({"TAILUP_CRASH_TRIAL": "3"}, ["did you mean TAILUP_CRASH_TRIALS?"]),
        ({"TAILUP_XYZZY": "1"}, ["TAILUP_XYZZY in the environment is not a tailup setting"]),
    ],
)
def test_unknown_variable_is_warned_about_with_the_likely_one(
    environ: dict[str, str], expected: list[str]
) -> None:
    warnings = unknown_variables(environ)
    assert len(warnings) == 1
    for text in expected:
        assert text in warnings[0]
    if "XYZZY" in warnings[0]:
        assert "did you mean" not in warnings[0]


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"TAILUP_PART_SIZE": "8MiB", "tailup_bucket": "b"},  # settings, any case
        {"TAILUP_CONFIG": "x.toml"},
        {"TAILUP_CRASH_TRIALS": "3", "TAILUP_CRASH_SEED": "1", "TAILUP_FAULT_SEED": "2"},
        {"PATH": "/bin", "NOT_TAILUP_X": "1", "TAILUPX": "1"},
    ],
)
def test_known_variables_are_not_warned_about(environ: dict[str, str]) -> None:
    assert unknown_variables(environ) == []


def test_unknown_variable_in_dotenv_is_warned_about(clean_environment: Path) -> None:
    write_dotenv(clean_environment, part_size="8MiB", idle_timout="30")
    warnings = unknown_variables({}, Path(".env"))
    assert warnings == [
        "TAILUP_IDLE_TIMOUT in .env is not a tailup setting and is ignored; "
        "did you mean TAILUP_IDLE_TIMEOUT?"
    ]


def test_every_tailup_variable_the_code_reads_is_known() -> None:
    """The allow-list is the one place for variables that are not settings: any TAILUP_ name in
    the code, the tests, the Makefile, CI or deploy files is a setting or is on it."""
    settings = {f"TAILUP_{name.upper()}" for name in Settings.model_fields}
    typos_on_purpose = {Path(__file__), ROOT / "tests" / "unit" / "test_config_file.py"}
    files = [ROOT / "Makefile", *(ROOT / ".ci").rglob("*"), *(ROOT / "deploy").rglob("*")]
    for folder in ("src", "tests", "bench"):
        files += [p for p in (ROOT / folder).rglob("*.py") if p not in typos_on_purpose]
    found: dict[str, Path] = {}
    for path in files:
        if path.is_file():
            for name in re.findall(r"TAILUP_[A-Z][A-Z0-9_]*", path.read_text(errors="replace")):
                found.setdefault(name, path)
    assert "TAILUP_CRASH_SEED" in found  # the scan sees the test-only ones
    unknown = {name: str(path) for name, path in found.items()}
    for name in settings | set(OTHER_VARIABLES):
        unknown.pop(name, None)
    assert unknown == {}


# -- every subcommand loads the settings the same way --


def _subcommands() -> set[str]:
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    return set(subparsers._group_actions[0].choices)  # type: ignore[attr-defined]


MINIMAL_ARGS = {
    "run": [],
    "status": [],
    "verify": ["some/key.mp4"],
    "abort": ["some-stream-id"],
    "retry": ["some-stream-id"],
    "gc": ["--older-than", "1h"],
    "salvage": ["--node", "n1"],
    "url": ["some/key.mp4"],
    "demo": [],
}


def test_every_subcommand_is_covered() -> None:
    assert set(MINIMAL_ARGS) == _subcommands()


@pytest.mark.parametrize("how", ["--config", "TAILUP_CONFIG"])
@pytest.mark.parametrize("command", sorted(MINIMAL_ARGS))
def test_every_subcommand_reads_the_config_file(
    clean_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    how: str,
) -> None:
    config = clean_environment / "tailup.toml"
    config.write_text('bucket = "b"\npart_size = 8.5\n', encoding="utf-8")
    argv = [command, *MINIMAL_ARGS[command]]
    if how == "--config":
        argv += ["--config", str(config)]
    else:
        monkeypatch.setenv("TAILUP_CONFIG", str(config))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"part_size in {config}" in err
    assert "got 8.5, a TOML float" in err
    assert "warning" not in err  # TAILUP_CONFIG is no unknown variable


@pytest.mark.parametrize("command", sorted(MINIMAL_ARGS))
def test_every_subcommand_warns_about_unknown_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.setenv("TAILUP_PART_SIZ", "8MiB")
    monkeypatch.setenv("TAILUP_PART_SIZE", "1MiB")  # and a refusal, to stop before any work
    assert main([command, *MINIMAL_ARGS[command]]) == 2
    err = capsys.readouterr().err
    assert (
        "tailup: warning: TAILUP_PART_SIZ in the environment is not a tailup setting and is "
        "ignored; did you mean TAILUP_PART_SIZE?"
    ) in err
    assert "--part-size (TAILUP_PART_SIZE): got '1MiB'" in err


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
    (
        "move-relative",
        ["--after-upload", "move:done"],
        {},
        ["--after-upload", "TAILUP_AFTER_UPLOAD", "relative path", "must be absolute", "move:DIR"],
    ),
    (
        "move-into-watch",
        ["--after-upload", "move:{work}/watched/done"],
        {},
        ["--after-upload", "TAILUP_AFTER_UPLOAD", "inside the watched folder", "uploaded again"],
    ),
    (
        "env-move-is-watch",
        [],
        {"TAILUP_AFTER_UPLOAD": "move:{work}/watched"},
        ["--after-upload", "TAILUP_AFTER_UPLOAD", "is the watched folder", "outside every"],
    ),
    (
        "watch-twice",
        ["--watch", "watched", "--watch", "{work}/watched"],
        {},
        ["--watch", "TAILUP_WATCH", "are the same folder", "none inside another"],
    ),
    (
        "watch-nested",
        ["--watch", "watched/sub", "--watch", "watched"],
        {},
        ["--watch", "TAILUP_WATCH", "'watched/sub' is inside 'watched'", "none inside another"],
    ),
    (
        "file-float-size",
        ["--config", "tailup.toml"],
        {},
        ["--part-size", "TAILUP_PART_SIZE", "part_size in tailup.toml", "got 8.5, a TOML float"],
    ),
    (
        "file-bool-count",
        ["--config", "tailup.toml"],
        {},
        ["--part-concurrency", "part_concurrency in tailup.toml", "a TOML boolean", "whole number"],
    ),
    (
        "file-array-name",
        [],
        {"TAILUP_CONFIG": "tailup.toml"},
        ["--bucket", "bucket in tailup.toml", "got ['b'], a TOML array", "a string in quotes"],
    ),
    (
        "file-move-into-watch",
        ["--config", "tailup.toml"],
        {},
        ["--after-upload", "after_upload in tailup.toml", "inside the watched folder"],
    ),
    (
        "unknown-env-variable",
        ["--part-size", "4MiB"],  # and a refusal, so that the daemon stops before any work
        {"TAILUP_PART_SIZ": "8MiB", "TAILUP_CRASH_SEED": "1", "TAILUP_FAULT_SEED": "2"},
        [
            "tailup: warning: TAILUP_PART_SIZ in the environment is not a tailup setting",
            "did you mean TAILUP_PART_SIZE?",
        ],
    ),
]
CLI_CONFIG_FILES = {
    "file-float-size": "part_size = 8.5\n",
    "file-bool-count": "part_concurrency = true\n",
    "file-array-name": 'bucket = ["b"]\n',
    "file-move-into-watch": 'after_upload = "move:{work}/watched/done"\n',
}


# The cases run as real `python -m tailup run` processes too (the rest in this process, where the
# settings are the subject, not the process): a flag, a variable, a config file named by a
# variable, and the warning about an unknown variable beside the other TAILUP_ ones.
SUBPROCESS_CASES = ("part-size-4MiB", "env-part-size", "file-array-name", "unknown-env-variable")


def _cli_case(case_id: str, work: Path) -> tuple[list[str], dict[str, str]]:
    """The `tailup` arguments and TAILUP_ variables of ``case_id`` (CLI_CASES), run in ``work``
    (its folders and config file made there): good values for all but the setting under test."""
    flags, env = next((c[1], c[2]) for c in CLI_CASES if c[0] == case_id)
    watched = work / "watched"
    (watched / "sub").mkdir(parents=True)
    (work / "a-file.mp4").write_bytes(b"")
    if case_id in CLI_CONFIG_FILES:
        config = CLI_CONFIG_FILES[case_id].replace("{work}", str(work))
        (work / "tailup.toml").write_text(config, encoding="utf-8")
    args = ["run", "--redis-url", "redis://127.0.0.1:1"]
    if "--watch" not in flags:
        args += ["--watch", str(watched)]
    if "--bucket" not in flags and "bucket" not in CLI_CONFIG_FILES.get(case_id, ""):
        args += ["--bucket", "b"]
    flags = [flag.replace("{work}", str(work)) for flag in flags]
    env = {name: value.replace("{work}", str(work)) for name, value in env.items()}
    return [*args, *flags], env


def _check_refused(case_id: str, returncode: int, stdout: str, stderr: str) -> None:
    names = next(c[3] for c in CLI_CASES if c[0] == case_id)
    assert returncode == 2, stderr
    for name in names:
        assert name in stderr
    assert "Traceback" not in stderr
    assert "Traceback" not in stdout
    if case_id != "unknown-env-variable":
        assert "warning" not in stderr


@pytest.fixture(scope="module")
def cli_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[int, str, str]]:
    """Run each of ``SUBPROCESS_CASES`` as a real `python -m tailup run`, all at once (fast)."""
    base_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TAILUP_")}
    base_env["PYTHONPATH"] = str(SRC)
    procs = {}
    for case_id in SUBPROCESS_CASES:
        work = tmp_path_factory.mktemp(f"cli-{case_id}")
        argv, env = _cli_case(case_id, work)
        procs[case_id] = subprocess.Popen(
            [sys.executable, "-m", "tailup", *argv],
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


@pytest.mark.parametrize("case_id", [case[0] for case in CLI_CASES])
def test_cli_run_refuses_bad_settings_with_exit_code_2(
    clean_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case_id: str,
) -> None:
    """``tailup.cli.main``, as `python -m tailup` calls it, in this process: no TAILUP_ variable
    but the case's, in a folder with no .env (clean_environment)."""
    argv, env = _cli_case(case_id, clean_environment)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    _check_refused(case_id, code, out, err)


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_a_real_process_refuses_bad_settings_alike(
    cli_results: dict[str, tuple[int, str, str]], case_id: str
) -> None:
    _check_refused(case_id, *cli_results[case_id])


def test_cli_warns_only_about_the_unknown_variable(
    cli_results: dict[str, tuple[int, str, str]],
) -> None:
    _, _, stderr = cli_results["unknown-env-variable"]
    assert stderr.count("warning") == 1  # not TAILUP_CRASH_SEED nor TAILUP_FAULT_SEED
    assert "--part-size (TAILUP_PART_SIZE): got '4MiB'" in stderr


def test_cli_gc_reads_the_config_file(tmp_path: Path) -> None:
    """`tailup gc` ignored --config and TAILUP_CONFIG once; the real command, both ways."""
    config = tmp_path / "tailup.toml"
    config.write_text('bucket = "b"\nredis_url = 6379\n', encoding="utf-8")
    base_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TAILUP_")}
    base_env["PYTHONPATH"] = str(SRC)
    command = [sys.executable, "-m", "tailup", "gc", "--older-than", "1h", "--dry-run"]
    for extra, env in ([["--config", str(config)], {}], [[], {"TAILUP_CONFIG": str(config)}]):
        done = subprocess.run(
            [*command, *extra],
            cwd=tmp_path,
            env={**base_env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert f"--redis-url (TAILUP_REDIS_URL, redis_url in {config})" in done.stderr
        assert "got 6379, a TOML integer" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "url", ["http://AKID:s3cr3t-key@127.0.0.1:8333", "https://user@s3.example", "http://:x@h"]
)
def test_an_endpoint_url_with_credentials_is_refused(url: str) -> None:
    # botocore ignores them and aiohttp refuses every signed request to such a URL: refused at
    # start, with where credentials go, rather than an outage retried for ever.
    with pytest.raises(ConfigError, match=r"--endpoint-url.*holds credentials.*AWS chain") as err:
        load_settings({"endpoint_url": url})
    from tailup.observe import redact_text

    assert "s3cr3t-key" not in redact_text(str(err.value))


def test_an_endpoint_url_without_credentials_is_taken() -> None:
    url = "http://127.0.0.1:8333/path@x"  # an @ past the host is not userinfo
    assert load_settings({"endpoint_url": url}).endpoint_url == url
