"""--config tailup.toml: flags > env > .env > config file > defaults; unknown keys are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tailup.cli import main
from tailup.config import load_settings, read_config_file
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
    from tailup.config import Settings

    documented = {
        line.lstrip("# ").split(" =")[0]
        for line in EXAMPLE.read_text().splitlines()
        if " = " in line and not line.startswith("##")
    }
    assert set(Settings.model_fields) <= documented
