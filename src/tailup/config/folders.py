"""Per-folder settings (issue 20.3): a ``[[watch]]`` table of the config file gives one watched
folder its own ``prefix``, ``key_template``, ``include``, ``after_upload``, ``keep_local``,
``storage_class``, ``tags`` and ``hls``; every field it leaves out is the global setting's (flags,
environment, .env, the file's top level, defaults). Resolved once, at load and at the daemon's
start, by a pure function (``resolve_folders``): no file system, no clock.

The folders watched are the --watch folders and every table's ``path``. A folder named both by
--watch (or TAILUP_WATCH, or a plain string in the file's ``watch``) and by a table is watched once,
with the table's settings: the table says how a folder is treated, --watch only that it is. A path
in two tables is refused, and so is a table on a --shared-watch folder (the nodes sharing it would
each need the same table; not supported). Each value is checked by the same validator as the
global setting of that name (tailup.config.settings), so a refusal reads the same.

``tags`` is an inline table (``tags = { site = "north" }``) or an array of "KEY=VALUE" strings, as
--tag takes them; ``tag``, the global setting's name, is another name of it (never both in one
table). ``hls`` makes a folder live HLS whatever --hls says (tailup.rules.hls): its files keyed by
their path below it (``{relpath}``: a key_template of its own is refused), playlists and fMP4
segments included. ``min_free`` is no folder's: free space is a file system's.

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
from tailup.objectoptions import ObjectOptions, tag_items
from tailup.rules.hls import HLS_INCLUDE, HLS_KEY_TEMPLATE

# The settings a [[watch]] table may give its folder (besides its ``path``).
FOLDER_FIELDS: Final = (
    "prefix",
    "key_template",
    "include",
    "after_upload",
    "keep_local",
    "storage_class",
    "tags",
    "hls",
)
TABLE_FIELDS: Final = ("path", *FOLDER_FIELDS)
# Other names a table may give a field: the global setting's (a flag's, --tag, says one tag).
ALIASES: Final = {"tag": "tags"}
# The global setting whose validators check a field, where its name is another.
_SETTING: Final = {"tags": "tag"}
# Settings that are no folder's, and why: a table giving one is told so.
_NOT_A_FOLDERS: Final = {
    "min_free": "free space is a file system's, not a folder's: it is set once, as --min-free "
    "(min_free at the file's top level), for every watched folder's file system",
}


@dataclass(frozen=True, slots=True)
class FolderSettings:
    """One watched folder's effective settings: its table's fields, the global ones elsewhere."""

    folder: Path  # as given (the daemon resolves it once)
    prefix: str
    key_template: str
    include: tuple[str, ...]
    after_upload: str
    object_options: ObjectOptions
    keep_local_s: float = 0.0  # 0: off (local retention by age; tailup.rules.retention)
    hls: bool = False  # live HLS (tailup.hlspublish): keyed by {relpath}, playlists published
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
        keep = f"{self.keep_local_s:g}s" if self.keep_local_s else "off"
        return {
            "folder": str(self.folder),
            "prefix": mark("prefix", repr(self.prefix)),
            "key_template": mark("key_template", self.key_template),
            "include": mark("include", " ".join(self.include)),
            "after_upload": mark("after_upload", self.after_upload),
            "keep_local": mark("keep_local", keep),
            "storage_class": mark("storage_class", storage.storage_class or "(bucket's)"),
            "tags": mark("tags", " ".join(f"{k}={v}" for k, v in storage.tags) or "(none)"),
            "hls": mark("hls", "on" if self.hls else "off"),
        }


def table_label(index: int, table: Mapping[str, Any], config_file: Path | None) -> str:
    """How a refusal names a table: its place in the file and its path."""
    path = table.get("path")
    named = f" (path {path!r})" if isinstance(path, str) else ""
    where = f" in {config_file}" if config_file is not None else ""
    return f"[[watch]] #{index}{named}{where}"


def unknown_field_problem(field: str) -> str:
    if field in _NOT_A_FOLDERS:
        return f"{field}: {_NOT_A_FOLDERS[field]}. Accepted: no {field} in a [[watch]] table"
    guess = difflib.get_close_matches(field, [*TABLE_FIELDS, *ALIASES], n=1)
    hint = f"; did you mean {ALIASES.get(guess[0], guess[0])!r}?" if guess else ""
    names = ", ".join(TABLE_FIELDS).replace("tags", "tags (or tag)")
    return f"unknown field {field!r}{hint} Fields are: {names}"


def _normal(path: str | Path) -> str:
    return os.path.normpath(str(path))


def _checked(settings: Settings, field: str, value: Any) -> Any:
    """``value`` for ``field`` through the global setting's own validators (ValidationError)."""
    name = _SETTING.get(field, field)
    probe = settings.model_copy()
    type(settings).__pydantic_validator__.validate_assignment(probe, name, value)
    return getattr(probe, name)


def _folder(
    settings: Settings, folder: Path, checked: Mapping[str, Any], share: str = ""
) -> FolderSettings:
    """``folder``'s settings: its table's ``checked`` fields, the global settings elsewhere."""
    values = {
        field: checked[field] if field in checked else getattr(settings, _SETTING.get(field, field))
        for field in FOLDER_FIELDS
    }
    options = ObjectOptions.of(
        values["storage_class"], settings.sse, settings.sse_kms_key_id, values["tags"]
    )
    hls = bool(values["hls"])
    include = tuple(values["include"])
    if hls:  # a template other than {relpath} is refused (_hls_problem; tailup.config.checks)
        include = tuple(dict.fromkeys([*include, *HLS_INCLUDE]))
    return FolderSettings(
        folder=folder,
        prefix=values["prefix"],
        key_template=HLS_KEY_TEMPLATE if hls else values["key_template"],
        include=include,
        after_upload=values["after_upload"],
        object_options=options,
        keep_local_s=float(values["keep_local"]),
        hls=hls,
        own=frozenset(checked),
        share=share,
    )


def _given(table: Mapping[str, Any], label: str, problems: list[str]) -> dict[str, tuple[str, Any]]:
    """The table's folder fields by their own names: (the name it gave, the value it gave)."""
    given = {field: (field, table[field]) for field in FOLDER_FIELDS if field in table}
    for alias, field in ALIASES.items():
        if alias not in table:
            continue
        if field in table:
            problems.append(
                f"{label}: both {field} and {alias} are given ({alias} is another name of "
                f"{field}). Accepted: one of them; {field} = {ACCEPTED_FORMS[field]}"
            )
        else:
            given[field] = (alias, table[alias])
    return given


def _table_problems(
    settings: Settings, table: Mapping[str, Any], label: str
) -> tuple[dict[str, Any], list[str]]:
    """The table's fields checked (each by its global setting's validators), and the refusals."""
    known = {*TABLE_FIELDS, *ALIASES}
    problems = [f"{label}: {unknown_field_problem(k)}" for k in table if k not in known]
    path = table.get("path")
    if not isinstance(path, str) or not path.strip():
        problems.append(f"{label}: no path given. Accepted: {ACCEPTED_FORMS['watch']}")
    checked: dict[str, Any] = {}
    for field, (name, value) in _given(table, label, problems).items():
        try:
            items = tag_items(value) if field == "tags" else value
            checked[field] = _checked(settings, field, items)
        except ValueError as exc:  # pydantic's ValidationError is one
            problems.append(
                f"{label}: {name}: got {value!r}: {_reason(exc)}. Accepted: {ACCEPTED_FORMS[field]}"
            )
    problem = _hls_problem(settings, checked, label)
    if problem:
        problems.append(problem)
    return checked, problems


def _reason(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
    return str(exc)


def _hls_problem(settings: Settings, checked: Mapping[str, Any], label: str) -> str:
    """An HLS folder (hls = true, or --hls) keys its files by their path below it: its table
    may not give another template (a player would not find the segments a playlist names)."""
    template = checked.get("key_template", HLS_KEY_TEMPLATE)
    if not checked.get("hls", settings.hls) or template == HLS_KEY_TEMPLATE:
        return ""
    why = "hls = true in this table" if checked.get("hls") else settings.label("hls")
    return (
        f"{label}: key_template: got {template!r}: it cannot be used with hls ({why}), which "
        f"keys every file of the folder by its path below it ({HLS_KEY_TEMPLATE}) so that a "
        "playlist's segments are beside it. Accepted: no key_template in an HLS folder's table "
        "(its prefix places the folder in the bucket), or hls = false"
    )


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
