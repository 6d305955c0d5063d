"""Per-folder settings (issue 20.3): a ``[[watch]]`` table of the config file gives one watched
folder its own ``prefix``, ``key_template``, ``include``, ``after_upload``, ``storage_class`` and
``tag``; every field it leaves out is the global setting's (flags, environment, .env, the file's
top level, defaults). Resolved once, at load and at the daemon's start, by a pure function
(``resolve_folders``): no file system, no clock.

The folders watched are the --watch folders and every table's ``path``. A folder named both by
--watch (or TAILUP_WATCH, or a plain string in the file's ``watch``) and by a table is watched once,
with the table's settings: the table says how a folder is treated, --watch only that it is. A path
in two tables is refused, and so is a table on a --shared-watch folder (the nodes sharing it would
each need the same table; not supported). Each value is checked by the same validator as the
global setting of that name (tailup.config.settings), so a refusal reads the same.

A recording keeps the key it was given (its record holds it): a config change moves new
recordings only.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from tailup.config.forms import ACCEPTED_FORMS
from tailup.config.settings import Settings
from tailup.config.values import AfterUploadKind, parse_after_upload
from tailup.errors import ConfigError
from tailup.objectoptions import ObjectOptions

# The settings a [[watch]] table may give its folder (besides its ``path``).
FOLDER_FIELDS: Final = ("prefix", "key_template", "include", "after_upload", "storage_class", "tag")
TABLE_FIELDS: Final = ("path", *FOLDER_FIELDS)


@dataclass(frozen=True, slots=True)
class FolderSettings:
    """One watched folder's effective settings: its table's fields, the global ones elsewhere."""

    folder: Path  # as given (the daemon resolves it once)
    prefix: str
    key_template: str
    include: tuple[str, ...]
    after_upload: str
    object_options: ObjectOptions
    own: frozenset[str] = frozenset()  # the fields its [[watch]] table sets
    share: str = ""  # the share name of a --shared-watch folder

    @property
    def after_upload_action(self) -> tuple[AfterUploadKind, Path | None]:
        return parse_after_upload(self.after_upload)

    def describe(self) -> dict[str, str]:
        """What the startup log and `tailup status` show of it (a field its table set: *)."""

        def mark(field: str, text: str) -> str:
            return f"{text} *" if field in self.own else text

        storage = self.object_options
        return {
            "folder": str(self.folder),
            "prefix": mark("prefix", repr(self.prefix)),
            "key_template": mark("key_template", self.key_template),
            "include": mark("include", " ".join(self.include)),
            "after_upload": mark("after_upload", self.after_upload),
            "storage_class": mark("storage_class", storage.storage_class or "(bucket's)"),
            "tag": mark("tag", " ".join(f"{k}={v}" for k, v in storage.tags) or "(none)"),
        }


def table_label(index: int, table: Mapping[str, Any], config_file: Path | None) -> str:
    """How a refusal names a table: its place in the file and its path."""
    path = table.get("path")
    named = f" (path {path!r})" if isinstance(path, str) else ""
    where = f" in {config_file}" if config_file is not None else ""
    return f"[[watch]] #{index}{named}{where}"


def unknown_field_problem(field: str) -> str:
    guess = difflib.get_close_matches(field, TABLE_FIELDS, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return f"unknown field {field!r}{hint} Fields are: {', '.join(TABLE_FIELDS)}"


def _normal(path: str | Path) -> str:
    return os.path.normpath(str(path))


def _checked(settings: Settings, field: str, value: Any) -> Any:
    """``value`` for ``field`` through the global setting's own validators (ValidationError)."""
    probe = settings.model_copy()
    type(settings).__pydantic_validator__.validate_assignment(probe, field, value)
    return getattr(probe, field)


def _folder(
    settings: Settings, folder: Path, table: Mapping[str, Any], share: str = ""
) -> FolderSettings:
    values = {field: table.get(field, getattr(settings, field)) for field in FOLDER_FIELDS}
    options = ObjectOptions.of(
        values["storage_class"], settings.sse, settings.sse_kms_key_id, values["tag"]
    )
    return FolderSettings(
        folder=folder,
        prefix=values["prefix"],
        key_template=values["key_template"],
        include=tuple(values["include"]),
        after_upload=values["after_upload"],
        object_options=options,
        own=frozenset(field for field in FOLDER_FIELDS if field in table),
        share=share,
    )


def _table_problems(
    settings: Settings, table: Mapping[str, Any], label: str
) -> tuple[dict[str, Any], list[str]]:
    """The table's fields checked (each by its global setting's validators), and the refusals."""
    problems = [f"{label}: {unknown_field_problem(k)}" for k in table if k not in TABLE_FIELDS]
    path = table.get("path")
    if not isinstance(path, str) or not path.strip():
        problems.append(f"{label}: no path given. Accepted: {ACCEPTED_FORMS['watch']}")
    checked: dict[str, Any] = {}
    for field in FOLDER_FIELDS:
        if field not in table:
            continue
        try:
            checked[field] = _checked(settings, field, table[field])
        except ValidationError as exc:
            reason = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            problems.append(
                f"{label}: {field}: got {table[field]!r}: {reason}. "
                f"Accepted: {ACCEPTED_FORMS[field]}"
            )
    return checked, problems


def resolve_folders(
    settings: Settings,
    tables: Sequence[Mapping[str, Any]],
    config_file: Path | None = None,
) -> tuple[FolderSettings, ...]:
    """Every watched folder's settings: the tables' folders first (in file order), then each
    --watch folder no table names, then the --shared-watch folders (global settings). ConfigError
    names every wrong table and field."""
    problems: list[str] = []
    shares = {_normal(folder): name for name, folder in settings.shares}
    seen: dict[str, int] = {}
    folders: list[FolderSettings] = []
    for index, table in enumerate(tables, start=1):
        label = table_label(index, table, config_file)
        checked, found = _table_problems(settings, table, label)
        given = table.get("path")
        path = _normal(given) if isinstance(given, str) and given.strip() else ""
        if path in seen:
            found.append(
                f"{label}: the folder {path!r} is given twice (also by [[watch]] #{seen[path]}). "
                "Accepted: one table per folder"
            )
        elif path in shares:
            found.append(
                f"{label}: {path!r} is the --shared-watch folder {shares[path]!r}: per-folder "
                "settings of a shared folder are not supported. Accepted: a folder of this node "
                "(a shared folder takes the global settings)"
            )
        elif path:
            seen[path] = index
        problems.extend(found)
        if found:
            continue
        folders.append(_folder(settings, Path(table["path"]), checked))
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    for folder in settings.watch:
        if _normal(folder) not in seen:
            seen[_normal(folder)] = 0
            folders.append(_folder(settings, folder, {}))
    for name, folder in settings.shares:
        folders.append(_folder(settings, folder, {}, share=name))
    return tuple(folders)


def folder_settings(settings: Settings) -> tuple[FolderSettings, ...]:
    """The loaded settings' folders (their [[watch]] tables, if they came from a file)."""
    return resolve_folders(settings, settings._watch_tables, settings._config_file)


def global_folder(settings: Settings) -> FolderSettings:
    """The global settings as a folder's: those of a path in no watched folder."""
    return _folder(settings, Path("."), {})


def all_includes(folders: Sequence[FolderSettings]) -> tuple[str, ...]:
    """Every folder's globs once, in order: what the watcher reports (each folder's own are
    applied when its events are routed)."""
    return tuple(dict.fromkeys(glob for folder in folders for glob in folder.include))
