"""tailup.config.values: the pure parsers behind the settings, each a table (parse_shared_watch's
is in test_fleet_logic.py, parse_after_upload's accepted forms in test_config.py)."""

from __future__ import annotations

from typing import Any

import pytest

import tailup.watcher
from tailup.config.values import DEFAULT_INCLUDE, is_node_id, parse_after_upload, split_list


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cam-a", True),
        ("host.example.org", True),
        ("node_1", True),
        ("n" * 64, True),
        ("n" * 65, False),
        ("", False),
        ("my host", False),
        ("node|1", False),  # the lease separator
        ("node:1", False),  # the scope separator
        ("nöde", False),
    ],
)
def test_is_node_id(value: str, expected: bool) -> None:
    assert is_node_id(value) is expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("move:", "is not one of keep, delete or move:DIR"),
        ("move:archive", "'archive' in 'move:archive' is a relative path; DIR must be absolute"),
        ("keep:/x", "is not one of"),
        ("delete:/x", "is not one of"),
        ("Keep", "is not one of"),
        ("", "is not one of"),
    ],
)
def test_parse_after_upload_refuses(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_after_upload(text)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("value", "separators", "expected"),
    [
        ("a,b", r"[,\n]", ["a", "b"]),
        ("/my videos,/b\n/c", r"[,\n]", ["/my videos", "/b", "/c"]),
        ("*.mp4 *.ts,, *.mkv", r"[,\s]+", ["*.mp4", "*.ts", "*.mkv"]),
        (" , ", r"[,\s]+", []),
        (["kept", "as is"], r"[,\s]+", ["kept", "as is"]),  # TOML arrays and flags are lists
    ],
)
def test_split_list(value: Any, separators: str, expected: Any) -> None:
    assert split_list(value, separators) == expected


def test_the_default_globs_are_defined_once() -> None:
    assert tailup.watcher.DEFAULT_INCLUDE is DEFAULT_INCLUDE
