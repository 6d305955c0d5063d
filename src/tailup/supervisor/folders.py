"""Each watched folder's own settings (issue 20.3; resolved by tailup.config.folders) as the
supervisor uses them: by the folder's resolved path, what a new record of a file in it takes (its
key template and prefix), what its streams run with (after-upload action, storage options, key
checks: exact keys in an HLS folder), which of its files are uploaded (its include globs), whether
its playlists are published (hls) and how long its verified recordings stay (keep_local)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from tailup.config.folders import FolderSettings, all_includes
from tailup.keys import template_is_unique
from tailup.rules.records import RecordDefaults
from tailup.stream import StreamDeps
from tailup.watcher.scan import is_candidate


class Folders:
    def __init__(
        self,
        folders: Sequence[FolderSettings],
        fallback: FolderSettings,
        defaults: RecordDefaults,
        deps: StreamDeps,
        *,
        overwrite: bool,
    ) -> None:
        """``fallback``: the global settings, for a path in no watched folder (a record whose
        folder is no longer watched); ``overwrite``: --key-conflict overwrite (no key checks)."""
        self._folders = {Path(folder.folder).resolve(): folder for folder in folders}
        self._fallback = fallback
        self._defaults: dict[Path | None, RecordDefaults] = {}
        self._deps: dict[Path | None, StreamDeps] = {}
        for root, folder in [*self._folders.items(), (None, fallback)]:
            self._defaults[root] = dataclasses.replace(
                defaults, key_template=folder.key_template, prefix=folder.prefix
            )
            self._deps[root] = dataclasses.replace(
                deps,
                after_upload=folder.after_upload_action,
                check_keys=not overwrite and not template_is_unique(folder.key_template),
                exact_keys=folder.hls,  # a segment's key is its path, never suffixed
                object_options=folder.object_options,
            )
        self.includes = all_includes([*folders, fallback])

    def of(self, root: Path | None) -> FolderSettings:
        """The settings of the watched folder ``root`` (the global ones for None or another)."""
        return self._folders.get(root, self._fallback) if root is not None else self._fallback

    def defaults(self, root: Path | None) -> RecordDefaults:
        return self._defaults.get(root if root in self._folders else None, self._defaults[None])

    def deps(self, root: Path | None) -> StreamDeps:
        return self._deps.get(root if root in self._folders else None, self._deps[None])

    def hls(self, root: Path | None) -> bool:
        """Whether the watched folder ``root`` is live HLS (--hls, or its table's hls)."""
        return root is not None and root in self._folders and self._folders[root].hls

    @property
    def any_hls(self) -> bool:
        return any(folder.hls for folder in self._folders.values())

    def keep_local_s(self) -> dict[Path, float]:
        """Each folder's keep_local (its table's, else --keep-local), by its resolved path."""
        return {root: folder.keep_local_s for root, folder in self._folders.items()}

    def is_candidate(self, path: Path, root: Path | None) -> bool:
        """Whether ``path`` (in the watched folder ``root``) matches that folder's globs."""
        return is_candidate(path, self.of(root).include)

    def described(self) -> list[dict[str, str]]:
        return [folder.describe() for folder in self._folders.values()]
