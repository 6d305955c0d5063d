"""--config tailup.toml: flags > env > .env > config file > defaults; unknown keys and values of
the wrong TOML type are refused, naming the key, the file and the accepted form."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tailup.cli import main
from tailup.config import (
    FileKind,
    PayloadSigning,
    Settings,
    file_kind,
    load_settings,
    read_config_file,
)
from tailup.config.folders import folder_settings
from tailup.errors import ConfigError
from tailup.plan import MiB

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "tailup.example.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TAILUP_ variable from the outside, and a working directory without a .env."""
    for name in list(os.environ):
        if name.startswith("TAILUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_each_layer_overrides_the_ones_below(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(
        tmp_path / "tailup.toml",
        'part_size = "16MiB"\nidle_timeout = 40\nclose_grace = "3s"\nregion = "eu-west-1"\n'
        'bucket = "from-file"\n',
    )
    _write(tmp_path / ".env", "TAILUP_IDLE_TIMEOUT=50\nTAILUP_CLOSE_GRACE=4\n")
    monkeypatch.setenv("TAILUP_CLOSE_GRACE", "5")
    monkeypatch.setenv("TAILUP_BUCKET", "from-env")

    settings = load_settings({"bucket": "from-flag"}, config)

    assert settings.bucket == "from-flag"  # flag over env over file
    assert settings.close_grace == 5.0  # env over .env over file
    assert settings.idle_timeout == 50.0  # .env over file
    assert settings.part_size == 16 * MiB  # file over default
    assert settings.region == "eu-west-1"
    assert settings.key_template == "streams/{stream_id}/{name}"  # default


def test_lists_and_paths_in_the_file(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "tailup.toml",
        'watch = ["/srv/a", "/srv/b"]\ninclude = ["*.mkv"]\nmetrics_port = 9731\n',
    )
    settings = load_settings({}, config)
    assert [str(p) for p in settings.watch] == ["/srv/a", "/srv/b"]
    assert settings.include == ["*.mkv"]
    assert settings.metrics_port == 9731


def test_unknown_key_is_refused_by_name_with_a_suggestion(tmp_path: Path) -> None:
    config = _write(tmp_path / "tailup.toml", 'part_sise = "8MiB"\nbucket = "b"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config)
    message = str(caught.value)
    assert "unknown setting 'part_sise'" in message
    assert "did you mean 'part_size'?" in message
    assert str(config) in message


def test_kebab_case_key_is_refused_with_the_right_name(tmp_path: Path) -> None:
    config = _write(tmp_path / "tailup.toml", "idle-timeout = 30\n")
    with pytest.raises(ConfigError, match="did you mean 'idle_timeout'"):
        read_config_file(config)


def test_bad_value_in_the_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = _write(tmp_path / "tailup.toml", 'part_size = "1MiB"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config)
    message = str(caught.value)
    assert f"part_size in {config}" in message
    assert "outside 5MiB..5GiB" in message and "Accepted:" in message


SIZE = 'a string like "8MiB" or a whole number of bytes'
WHOLE = "a whole number without quotes"
TEXT = "a string in quotes"
DURATION = "a number of seconds like 30 or 2.5"
LIST = "an array of strings"


@pytest.mark.parametrize(
    ("line", "flag", "expected"),
    [
        ("part_size = 8.5", "--part-size", ["got 8.5, a TOML float", SIZE, "from 5MiB to 5GiB"]),
        ("part_size = 8388608.0", "--part-size", ["a TOML float", SIZE]),
        ("part_size = true", "--part-size", ["got True, a TOML boolean", SIZE]),
        ("part_size = [8]", "--part-size", ["got [8], a TOML array", SIZE]),
        ("part_size = {mib = 8}", "--part-size", ["a TOML table", SIZE]),
        ("max_inflight_bytes = false", "--max-inflight-bytes", ["a TOML boolean", SIZE]),
        ("part_concurrency = 4.0", "--part-concurrency", ["got 4.0, a TOML float", WHOLE]),
        ("part_concurrency = true", "--part-concurrency", ["a TOML boolean", "1 to 64"]),
        ('part_concurrency = "4"', "--part-concurrency", ["got '4', a TOML string", WHOLE]),
        ("metrics_port = 9731.5", "--metrics-port", ["a TOML float", "0 (off) to 65535"]),
        ("idle_timeout = true", "--idle-timeout", ["got True, a TOML boolean", DURATION]),
        ("idle_timeout = [30]", "--idle-timeout", ["a TOML array", DURATION]),
        ("idle_timeout = 1979-05-27", "--idle-timeout", ["a TOML date/time", DURATION]),
        ("shutdown_grace = 00:00:20", "--shutdown-grace", ["a TOML date/time"]),
        ("bucket = 3", "--bucket", ["got 3, a TOML integer", TEXT, "a bucket name"]),
        ('bucket = ["a", "b"]', "--bucket", ["a TOML array", TEXT]),
        ("endpoint_url = true", "--endpoint-url", ["a TOML boolean", "a URL like"]),
        ("redis_url = 6379", "--redis-url", ["got 6379, a TOML integer", "redis://"]),
        ("key_template = 1", "--key-template", ["a TOML integer", "{stream_id}"]),
        ('after_upload = ["move", "/x"]', "--after-upload", ["a TOML array", "move:DIR"]),
        ("log_level = 3", "--log-level", ["a TOML integer", "debug, info"]),
        ("log_format = false", "--log-format", ["a TOML boolean", "json, console or auto"]),
        ("payload_signing = true", "--payload-signing", ["a TOML boolean", "auto, always"]),
        ("poll = 1", "--poll", ["got 1, a TOML integer", "true or false"]),
        ('poll = "yes"', "--poll", ["got 'yes', a TOML string", "true or false"]),
        ("watch = 3", "--watch", ["got 3, a TOML integer", LIST]),
        ('watch = ["/srv/a", 3]', "--watch", ["got 3, a TOML integer in the array", LIST]),
        ("include = [true]", "--include", ["got True, a TOML boolean in the array", LIST]),
        ('include = [["*.mp4"]]', "--include", ["a TOML array in the array", LIST]),
    ],
)
def test_value_of_the_wrong_type_is_refused_naming_the_key(
    tmp_path: Path, line: str, flag: str, expected: list[str]
) -> None:
    config = _write(tmp_path / "tailup.toml", line + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config)
    message = str(caught.value)
    key = line.split(" =")[0]
    assert f"{flag} (TAILUP_{key.upper()}, {key} in {config})" in message
    assert "Accepted:" in message
    for text in expected:
        assert text in message


def test_every_type_mistake_is_reported_at_once(tmp_path: Path) -> None:
    config = _write(tmp_path / "tailup.toml", "part_size = 8.5\npoll = 1\nbucket = 2\nxyz = 1\n")
    with pytest.raises(ConfigError) as caught:
        read_config_file(config)
    for key in ("part_size in", "poll in", "bucket in", "unknown setting 'xyz'"):
        assert key in str(caught.value)


@pytest.mark.parametrize(
    ("line", "field", "expected"),
    [
        ("part_size = 8388608", "part_size", 8 * MiB),
        ('part_size = "8MiB"', "part_size", 8 * MiB),
        ('part_size = "8.5MiB"', "part_size", int(8.5 * MiB)),
        ("idle_timeout = 2.5", "idle_timeout", 2.5),
        ("idle_timeout = 30", "idle_timeout", 30.0),
        ('idle_timeout = "2m"', "idle_timeout", 120.0),
        ("part_concurrency = 8", "part_concurrency", 8),
        ("poll = true", "poll", True),
        ('watch = "/srv/a"', "watch", [Path("/srv/a")]),
        ('watch = ["/srv/a", "/srv/b"]', "watch", [Path("/srv/a"), Path("/srv/b")]),
        ('payload_signing = "never"', "payload_signing", PayloadSigning.NEVER),
        ('endpoint_url = "http://127.0.0.1:8333"', "endpoint_url", "http://127.0.0.1:8333"),
    ],
)
def test_values_of_the_right_type_are_taken(
    tmp_path: Path, line: str, field: str, expected: Any
) -> None:
    config = _write(tmp_path / "tailup.toml", line + "\n")
    assert getattr(load_settings({}, config), field) == expected


def test_every_setting_has_a_form_in_the_file() -> None:
    kinds = {name: file_kind(name) for name in Settings.model_fields}
    assert kinds["part_size"] is FileKind.SIZE and kinds["poll"] is FileKind.SWITCH
    assert kinds["watch"] is FileKind.LIST and kinds["log_format"] is FileKind.TEXT


def test_invalid_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    broken = _write(tmp_path / "broken.toml", "part_size = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings({}, broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({}, tmp_path / "missing.toml")


def test_cli_exits_2_naming_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path / "tailup.toml", 'bucket = "b"\nredis_ulr = "redis://x"\n')
    assert main(["status", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'redis_ulr'" in err and "did you mean 'redis_url'?" in err


def test_cli_exits_2_on_a_float_size_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "tailup.toml", 'bucket = "b"\npart_size = 8.5\n')
    assert main(["gc", "--older-than", "1h", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"--part-size (TAILUP_PART_SIZE, part_size in {config}): got 8.5, a TOML float" in err
    assert "Traceback" not in err


def test_tailup_config_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "tailup.toml", "watch_dirs = []\n")
    monkeypatch.setenv("TAILUP_CONFIG", str(config))
    assert main(["status"]) == 2
    assert "unknown setting 'watch_dirs'" in capsys.readouterr().err


def test_the_example_file_is_valid_and_complete() -> None:
    data = read_config_file(EXAMPLE)
    settings = load_settings({}, EXAMPLE)
    assert settings.bucket == data["bucket"]
    assert settings.part_size == 8 * MiB
    # The example documents every setting, so it never falls behind the code.
    documented = {
        line.lstrip("# ").split(" =")[0]
        for line in EXAMPLE.read_text().splitlines()
        if " = " in line and not line.startswith("##")
    }
    assert set(Settings.model_fields) <= documented


def test_the_examples_watch_tables_load_once_uncommented(tmp_path: Path) -> None:
    """The example's commented [[watch]] tables, uncommented (and its `watch` array dropped, as
    it says): every field they show is accepted and reaches its folder."""
    text = EXAMPLE.read_text()
    head, _, tables = text.partition("# -- per-folder settings")
    head = "\n".join(line for line in head.splitlines() if not line.startswith("watch = "))
    body = "\n".join(
        line.removeprefix("# ").removeprefix("#")
        for line in tables.splitlines()
        if line.startswith("#") and not line.startswith("##")
    )
    config = _write(tmp_path / "tailup.toml", f"{head}\n{body}\n")
    by_folder = {str(f.folder): f for f in folder_settings(load_settings({}, config))}
    assert by_folder["/srv/cams/site-a"].object_options.tags == (("site", "north"), ("cam", "3"))
    assert by_folder["/srv/guest"].keep_local_s == 86400
    assert by_folder["/srv/hls"].hls and by_folder["/srv/hls"].key_template == "{relpath}"
