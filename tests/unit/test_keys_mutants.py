"""tailup.keys where mutation testing found it unchecked (`make mutants`, docs/testing.md): the
slashes stripped are slashes only, a template that does not parse is not unique, and the problems
are reported in the words the operator reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest

from tailup.keys import (
    KeyContext,
    index_path,
    render_key,
    suffixed_key,
    template_is_unique,
    template_problems,
)

CTX = KeyContext(
    stream_id="s-1",
    relpath=PurePosixPath("cam1.mp4"),
    watch_name="recordings",
    started_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    hostname="nvr-01",
)


@pytest.mark.parametrize(
    ("prefix", "template", "expected"),
    [
        ("", "/X/{name}", "X/cam1.mp4"),  # only the slash goes, not a leading letter
        ("", "X{name}", "Xcam1.mp4"),
        ("/Xv/", "{name}", "Xv/cam1.mp4"),
        ("XvX", "{name}", "XvX/cam1.mp4"),
    ],
)
def test_only_slashes_are_stripped(prefix: str, template: str, expected: str) -> None:
    assert render_key(template, CTX, prefix=prefix) == expected


@pytest.mark.parametrize(
    ("template", "unique"),
    [
        ("{stream_id}/{name}", True),
        ("{name}", False),
        ("{stream_id", False),  # does not parse: no key from it at all
        ("}{stream_id}", False),
    ],
)
def test_template_is_unique(template: str, unique: bool) -> None:
    assert template_is_unique(template) is unique


@pytest.mark.parametrize(
    ("template", "problems"),
    [
        ("{}/{name}", ["unknown placeholder {}"]),
        ("{oops}/{name}", ["unknown placeholder {oops}"]),
        (
            "{date}.mp4",
            ["it names no file: use {stream_id}, {name} or {relpath} so keys differ"],
        ),
    ],
)
def test_template_problems_in_words(template: str, problems: list[str]) -> None:
    assert template_problems(template) == problems


@pytest.mark.parametrize(
    ("key", "number", "expected"),
    [
        ("a/cam1.ts", 2, "a/cam1-2.ts"),
        ("a/b/cam1.tar.ts", 3, "a/b/cam1.tar-3.ts"),  # before the last extension only
        ("cam1.ts", 12, "cam1-12.ts"),  # no folder
        ("cam1", 2, "cam1-2"),  # no extension
        ("a/.hidden", 2, "a/.hidden-2"),  # a dot file's name is all stem
        ("a.b/cam1", 2, "a.b/cam1-2"),  # a dot in a folder is no extension
    ],
)
def test_suffixed_key(key: str, number: int, expected: str) -> None:
    """The n-th choice for a key already taken (tailup.keyclaim), in the unit tests too."""
    assert suffixed_key(key, number) == expected


@pytest.mark.parametrize(
    ("scope", "path", "root", "name"),
    [
        ("share:s", "/mnt/BOX/cam1.ts", "/mnt/BOX", "cam1.ts"),  # a root ending in X
        ("share:s", "/mnt/BOX/cam1.ts", "/mnt/BOX/", "cam1.ts"),
        ("share:s", "/mnt/BOXY/cam1.ts", "/mnt/BOX", "/mnt/BOXY/cam1.ts"),  # not below it
        ("node:n", "/mnt/BOX/cam1.ts", "/mnt/BOX", "/mnt/BOX/cam1.ts"),
    ],
)
def test_index_path_strips_the_roots_slashes_only(
    scope: str, path: str, root: str, name: str
) -> None:
    assert index_path(scope, path, root) == name
