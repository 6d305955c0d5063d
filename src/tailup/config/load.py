"""Loading: flags override environment (TAILUP_...) override a .env file override a TOML config
file (--config) override defaults; a refusal names each wrong setting as it was given. A TAILUP_
variable that is no setting cannot be refused (the environment is shared), but it is warned about,
with the likely intended one."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from tailup.config.folders import resolve_folders
from tailup.config.forms import ACCEPTED_FORMS, setting_label
from tailup.config.settings import Settings
from tailup.config.toml import read_config_file, split_watch
from tailup.errors import ConfigError

# TAILUP_ variables that are not settings but are read by tailup or its tests: never warned about.
# The one list of them (tests/unit/test_config.py checks every TAILUP_ name in the tree is either a
# setting or here).
OTHER_VARIABLES: dict[str, str] = {
    "TAILUP_CONFIG": "the config file, like --config",
    "TAILUP_ENV_FILE": "the .env file to read instead of .env in the working directory; "
    "empty: none (the tests set it so)",
    "TAILUP_CRASH_TRIALS": "tests: how many kill -9 trials tests/e2e/test_crash.py runs",
    "TAILUP_CRASH_SEED": "tests: the seed of those trials, to replay one",
    "TAILUP_FAULT_SEED": "tests: the seed of tests/integration/test_faults.py, to replay one",
    "TAILUP_HYPOTHESIS_EXAMPLES": "tests: examples per property test (make test-all raises it)",
    "TAILUP_CHAOS_ROUNDS": "tests: rounds of tests/e2e/test_chaos.py (make test-all raises it)",
    "TAILUP_CHAOS_SEED": "tests: the seed of the first chaos round, to replay one",
}
ENV_FILE_VARIABLE = "TAILUP_ENV_FILE"


def _settings_class(config_file: Path | None, in_file: dict[str, Any]) -> type[Settings]:
    if config_file is None:
        return Settings

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # Earlier sources win: flags, environment, .env, the config file, then defaults.
            # The file as read_config_file checked it, its [[watch]] tables left out.
            toml = InitSettingsSource(settings_cls, init_kwargs=in_file)
            return init_settings, env_settings, dotenv_settings, toml, file_secret_settings

    return FileSettings


def load_settings(overrides: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Settings from flags (``overrides``), env, .env (``dotenv_file``) and ``config_file``;
    ConfigError names what is wrong."""
    in_file = read_config_file(config_file) if config_file is not None else {}
    folders, tables = split_watch(in_file.get("watch", []))
    file_values = {k: v for k, v in in_file.items() if k != "watch"}
    if folders:  # as given when there is no table ("a,b" is split as from the environment)
        file_values["watch"] = folders if tables else in_file["watch"]
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        # _env_file: pydantic-settings' documented init argument, unknown to the mypy plugin.
        cls = _settings_class(config_file, file_values)
        settings = cls(_env_file=dotenv_file(), **given)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            reason = str(error["msg"]).removeprefix("Value error, ")
            accepted = ACCEPTED_FORMS.get(field, "")
            got = error.get("input")
            shown = "" if isinstance(got, dict) else f" got {got!r}:"
            label = setting_label(field, config_file if field in in_file else None)
            line = f"{label}:{shown} {reason}"
            lines.append(f"{line}. Accepted: {accepted}" if accepted else line)
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None
    settings._config_file = config_file
    settings._file_keys = frozenset(in_file)
    settings._watch_tables = tuple(tables)
    # Refused now, whatever the command; and the tables' folders are watched (with --watch's).
    resolved = resolve_folders(settings, tables, config_file)
    given_folders = {os.path.normpath(folder) for folder in settings.watch}
    settings.watch = [
        *settings.watch,
        *(
            f.folder
            for f in resolved[: len(tables)]
            if os.path.normpath(f.folder) not in given_folders
        ),
    ]
    return settings


def unknown_variables(environ: Mapping[str, str], dotenv: Path | None = None) -> list[str]:
    """A warning for each TAILUP_ variable (in ``environ`` or the ``dotenv`` file) that is neither
    a setting nor in OTHER_VARIABLES: likely a typo, which would otherwise go unnoticed."""
    settings = {name.upper(): name for name in Settings.model_fields}
    known = {f"TAILUP_{upper}" for upper in settings} | set(OTHER_VARIABLES)
    sources: list[tuple[str, list[str]]] = [("in the environment", sorted(environ))]
    if dotenv is not None and dotenv.is_file():
        sources.append((f"in {dotenv}", list(dotenv_values(dotenv))))
    suffixes = sorted(name.removeprefix("TAILUP_") for name in known)
    warnings = []
    for where, names in sources:
        for name in names:
            upper = name.upper()
            if not upper.startswith("TAILUP_") or upper in known:
                continue
            # Match without the prefix every candidate shares, or everything looks alike.
            guess = difflib.get_close_matches(upper.removeprefix("TAILUP_"), suffixes, n=1)
            hint = f"; did you mean TAILUP_{guess[0]}?" if guess else ""
            warnings.append(f"{name} {where} is not a tailup setting and is ignored{hint}")
    return warnings


def dotenv_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The .env file every load reads: .env in the working directory, or the file
    TAILUP_ENV_FILE names; none when that is set empty (so tests keep a developer's .env out)."""
    given = (os.environ if environ is None else environ).get(ENV_FILE_VARIABLE)
    if given is None:
        return Path(str(Settings.model_config.get("env_file") or ".env"))
    return Path(given) if given else None
