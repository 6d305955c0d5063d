"""The config file's TOML: which TOML type each setting takes (TOML has types; the environment has
not), and the refusals of a file that cannot be read, is not TOML, has a key tailup does not know
(a typo must not silently fall back to a default) or a value of the wrong type."""

from __future__ import annotations

import datetime
import difflib
import enum
import tomllib
from pathlib import Path
from typing import Any, get_origin

from tailup.config.folders import FOLDER_FIELDS, table_label
from tailup.config.forms import ACCEPTED_FORMS, setting_label
from tailup.config.settings import DURATION_FIELDS, SIZE_FIELDS, Settings
from tailup.errors import ConfigError


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file, refusing what cannot be read, parsed or is unknown."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
    known = set(Settings.model_fields)
    problems = [_unknown_key_problem(key, known) for key in data if key not in known]
    for key, value in data.items():
        if key == "watch":
            problems.extend(_watch_value_problems(value, path))
            continue
        problem = _file_value_problem(key, value, path) if key in known else None
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(f"invalid config file {path}:\n  " + "\n  ".join(problems))
    return data


class FileKind(enum.Enum):
    """What a setting's value may be in a TOML file (TOML has types; the environment has not)."""

    TEXT = 'a string in quotes, e.g. "value"'
    SIZE = 'a string like "8MiB" or a whole number of bytes'
    DURATION = 'a number of seconds like 30 or 2.5, or a string like "90s"'
    WHOLE = "a whole number without quotes, e.g. 4"
    SWITCH = "true or false"
    LIST = 'an array of strings, e.g. ["a", "b"], or one string'


def file_kind(field: str) -> FileKind:
    if field in SIZE_FIELDS:
        return FileKind.SIZE
    if field in DURATION_FIELDS or field == "rpo":  # rpo: a duration, or "off"
        return FileKind.DURATION
    annotation = Settings.model_fields[field].annotation
    if annotation is bool:
        return FileKind.SWITCH
    if annotation is int:
        return FileKind.WHOLE
    if get_origin(annotation) is list:
        return FileKind.LIST
    if annotation in (str, str | None) or (
        isinstance(annotation, type) and issubclass(annotation, enum.Enum)
    ):
        return FileKind.TEXT
    raise AssertionError(f"no TOML form for setting {field} ({annotation})")


def _file_value_ok(kind: FileKind, value: Any) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, and a size or a count to nobody
        return kind is FileKind.SWITCH
    match kind:
        case FileKind.TEXT:
            return isinstance(value, str)
        case FileKind.SIZE:
            return isinstance(value, str | int)
        case FileKind.DURATION:
            return isinstance(value, str | int | float)
        case FileKind.WHOLE:
            return isinstance(value, int)
        case FileKind.LIST:
            items = value if isinstance(value, list) else [value]
            return all(isinstance(item, str) for item in items)
        case FileKind.SWITCH:
            return False


def _toml_type(value: Any) -> str:
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
        ((datetime.date, datetime.time), "date/time"),
    ]
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _file_value_problem(key: str, value: Any, path: Path) -> str | None:
    kind = file_kind(key)
    if _file_value_ok(kind, value):
        return None
    shown = value
    if kind is FileKind.LIST and isinstance(value, list):  # name the offending element
        shown = next((item for item in value if not isinstance(item, str)), value)
    what = f"a TOML {_toml_type(shown)}" + (" in the array" if shown is not value else "")
    accepted = ACCEPTED_FORMS.get(key)
    form = f"{accepted}; in the file, {kind.value}" if accepted else kind.value
    return f"{setting_label(key, path)}: got {shown!r}, {what}. Accepted: {form}"


def split_watch(value: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """The file's ``watch``: its folders given as strings, and its [[watch]] tables."""
    items = value if isinstance(value, list) else [value]
    tables = [item for item in items if isinstance(item, dict)]
    return [item for item in items if not isinstance(item, dict)], tables


def _watch_value_problems(value: Any, path: Path) -> list[str]:
    """``watch``: strings (folders), or [[watch]] tables whose fields have their settings' types
    (their values are checked when the folders are resolved: tailup.config.folders)."""
    folders, tables = split_watch(value)
    problems = [p for p in [_file_value_problem("watch", folders, path)] if p]
    for index, table in enumerate(tables, start=1):
        label = table_label(index, table, path)
        if "path" in table and not isinstance(table["path"], str):
            got = table["path"]
            problems.append(
                f"{label}: path: got {got!r}, a TOML {_toml_type(got)}. Accepted: "
                f"{ACCEPTED_FORMS['watch']}; in the file, {FileKind.TEXT.value}"
            )
        for field, given in table.items():
            # tags (or tag) takes a table or an array: tailup.config.folders checks its forms.
            typed = field in FOLDER_FIELDS and field in Settings.model_fields
            kind = file_kind(field) if typed else None
            if kind is not None and not _file_value_ok(kind, given):
                problems.append(
                    f"{label}: {field}: got {given!r}, a TOML {_toml_type(given)}. Accepted: "
                    f"{ACCEPTED_FORMS[field]}; in the file, {kind.value}"
                )
    return problems


def _unknown_key_problem(key: str, known: set[str]) -> str:
    guess = difflib.get_close_matches(key.replace("-", "_"), sorted(known), n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return f"unknown setting {key!r}{hint} Settings are: {', '.join(sorted(known))}"
