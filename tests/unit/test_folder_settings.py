"""Issue 20.3: per-folder settings. A [[watch]] table of the config file gives its folder its own
prefix, key_template, include, after_upload, storage_class and tag; every field it leaves out is
the global setting's. The resolution is a pure function (tailup.config.folders.resolve_folders),
table-tested here; loading a file with tables, and what `status` shows, too."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tailup.config import Settings, load_settings
from tailup.config.folders import FolderSettings, all_includes, folder_settings, resolve_folders
from tailup.errors import ConfigError
from tailup.hygiene import gc_prefixes
from tailup.objectoptions import ObjectOptions
from tailup.status import daemon_line


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TAILUP_ variable from the outside, and a working directory without a .env."""
    for name in list(os.environ):
        if name.startswith("TAILUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _settings(**given: Any) -> Settings:
    base: dict[str, Any] = {
        "bucket": "b",
        "prefix": "global",
        "include": ["*.ts", "*.mkv"],
        "after_upload": "keep",
        "storage_class": "STANDARD_IA",
        "sse": "aws:kms",
        "sse_kms_key_id": "alias/k",
        "tag": ["site=hq"],
    }
    return Settings(**{**base, **given})


def _by_folder(folders: tuple[FolderSettings, ...]) -> dict[str, FolderSettings]:
    return {str(folder.folder): folder for folder in folders}


def test_a_table_sets_its_own_fields_and_inherits_every_other() -> None:
    settings = _settings(watch=["/srv/plain"])
    tables: list[dict[str, Any]] = [
        {"path": "/srv/cams", "prefix": "site-a", "key_template": "{watch}/{date}/{name}"},
        {"path": "/srv/guest", "after_upload": "delete", "include": ["*.mp4"]},
        {"path": "/srv/cold", "storage_class": "GLACIER_IR", "tag": ["site=cold", "t=1"]},
    ]

    folders = resolve_folders(settings, tables)

    assert [str(f.folder) for f in folders] == [
        "/srv/cams",
        "/srv/guest",
        "/srv/cold",
        "/srv/plain",
    ]
    got = _by_folder(folders)
    cams, guest, cold, plain = (
        got[p] for p in ("/srv/cams", "/srv/guest", "/srv/cold", "/srv/plain")
    )
    assert (cams.prefix, cams.key_template) == ("site-a", "{watch}/{date}/{name}")
    assert (cams.include, cams.after_upload) == (("*.ts", "*.mkv"), "keep")
    assert cams.own == {"prefix", "key_template"}
    assert (guest.prefix, guest.key_template) == ("global", "streams/{stream_id}/{name}")
    assert (guest.include, guest.after_upload) == (("*.mp4",), "delete")
    # The storage options: the table's class and tags, the global encryption.
    assert cold.object_options == ObjectOptions(
        "GLACIER_IR", "aws:kms", "alias/k", (("site", "cold"), ("t", "1"))
    )
    assert guest.object_options == ObjectOptions(
        "STANDARD_IA", "aws:kms", "alias/k", (("site", "hq"),)
    )
    assert plain.own == frozenset()
    assert (plain.prefix, plain.include, plain.after_upload) == (
        "global",
        ("*.ts", "*.mkv"),
        "keep",
    )
    assert all_includes(folders) == ("*.ts", "*.mkv", "*.mp4")


def test_a_folder_in_a_table_and_in_watch_is_one_folder_with_the_tables_settings() -> None:
    settings = _settings(watch=["/srv/cams/", "/srv/plain"])

    folders = resolve_folders(settings, [{"path": "/srv/cams", "prefix": "site-a"}])

    assert [(str(f.folder), f.prefix) for f in folders] == [
        ("/srv/cams", "site-a"),
        ("/srv/plain", "global"),
    ]


def test_shared_folders_take_the_global_settings() -> None:
    settings = _settings(watch=["/srv/a"], shared_watch=["nas=/mnt/nas"])

    folders = resolve_folders(settings, [{"path": "/srv/a", "prefix": "a"}])

    share = _by_folder(folders)["/mnt/nas"]
    assert (share.share, share.prefix, share.own) == ("nas", "global", frozenset())


def test_the_global_include_is_a_folders_unless_its_table_sets_one() -> None:
    settings = _settings(include="*.mov")

    folders = resolve_folders(settings, [{"path": "/a"}, {"path": "/b", "include": "*.ts, *.mp4"}])

    assert [f.include for f in folders] == [("*.mov",), ("*.ts", "*.mp4")]


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        pytest.param(
            [{"path": "/a", "prefx": "x"}],
            "[[watch]] #1 (path '/a') in /etc/t.toml: unknown field 'prefx'; did you mean "
            "'prefix'? Fields are: path, prefix, key_template, include, after_upload, "
            "keep_local, storage_class, tags (or tag), hls",
            id="unknown-field",
        ),
        pytest.param(
            [{"path": "/a"}, {"path": "/b"}, {"path": "/a/"}],
            "[[watch]] #3 (path '/a/') in /etc/t.toml: the folder '/a' is given twice (also by "
            "[[watch]] #1)",
            id="path-twice",
        ),
        pytest.param(
            [{"prefix": "x"}],
            "[[watch]] #1 in /etc/t.toml: no path given. Accepted: an existing folder",
            id="no-path",
        ),
        pytest.param(
            [{"path": "/mnt/nas", "prefix": "x"}],
            "[[watch]] #1 (path '/mnt/nas') in /etc/t.toml: '/mnt/nas' is the --shared-watch "
            "folder 'nas': per-folder settings of a shared folder are not supported",
            id="shared-folder",
        ),
        pytest.param(
            [{"path": "/a", "key_template": "{nope}/{name}"}],
            "[[watch]] #1 (path '/a') in /etc/t.toml: key_template: got '{nope}/{name}': "
            "unknown placeholder {nope}",
            id="key-template",
        ),
        pytest.param(
            [{"path": "/a", "after_upload": "remove"}],
            "[[watch]] #1 (path '/a') in /etc/t.toml: after_upload: got 'remove': 'remove' is "
            "not one of keep, delete or move:DIR",
            id="after-upload",
        ),
        pytest.param(
            [{"path": "/a", "after_upload": "move:relative/dir"}],
            "after_upload: got 'move:relative/dir': 'relative/dir' in 'move:relative/dir' is a "
            "relative path; DIR must be absolute",
            id="after-upload-relative",
        ),
        pytest.param(
            [{"path": "/a", "include": []}],
            "[[watch]] #1 (path '/a') in /etc/t.toml: include: got []: no pattern given. "
            "Accepted: one or more file name globs",
            id="include-empty",
        ),
        pytest.param(
            [{"path": "/a", "storage_class": "glacier"}],
            "storage_class: got 'glacier': 'glacier' is not an S3 storage class (did you mean "
            "GLACIER?)",
            id="storage-class",
        ),
        pytest.param(
            [{"path": "/a", "tag": ["aws:x=1"]}],
            "tag: got ['aws:x=1']: the KEY 'aws:x' starts with aws:, which S3 keeps for itself",
            id="tag",
        ),
    ],
)
def test_a_wrong_table_is_refused_naming_its_index_path_and_field(
    tables: list[dict[str, Any]], expected: str
) -> None:
    settings = _settings(shared_watch=["nas=/mnt/nas"])

    with pytest.raises(ConfigError) as caught:
        resolve_folders(settings, tables, Path("/etc/t.toml"))

    assert expected in str(caught.value)


def test_every_wrong_table_is_named_at_once() -> None:
    tables = [{"path": "/a", "prefx": "x"}, {"path": "/b", "after_upload": "rm"}]

    with pytest.raises(ConfigError) as caught:
        resolve_folders(_settings(), tables)

    assert "[[watch]] #1 (path '/a'): unknown field 'prefx'" in str(caught.value)
    assert "[[watch]] #2 (path '/b'): after_upload: got 'rm'" in str(caught.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_with_watch_tables_loads_them(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "tailup.toml",
        'bucket = "b"\nprefix = "global"\n'
        '[[watch]]\npath = "/srv/cams/site-a"\nprefix = "site-a"\n'
        'key_template = "{watch}/{date}/{name}"\n'
        '[[watch]]\npath = "/srv/guest"\nafter_upload = "delete"\ninclude = ["*.mp4"]\n',
    )

    settings = load_settings({"watch": ["/srv/plain"]}, config)

    # The tables' folders are watched with --watch's (the flag does not replace them).
    assert settings.watch == [Path("/srv/plain"), Path("/srv/cams/site-a"), Path("/srv/guest")]
    got = _by_folder(folder_settings(settings))
    assert got["/srv/cams/site-a"].prefix == "site-a"
    assert got["/srv/guest"].after_upload == "delete"
    assert got["/srv/plain"].prefix == "global"


def test_a_watch_array_may_mix_folders_and_tables(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "tailup.toml",
        'bucket = "b"\nwatch = ["/srv/plain", { path = "/srv/cams", prefix = "cams" }]\n',
    )

    settings = load_settings({}, config)

    assert settings.watch == [Path("/srv/plain"), Path("/srv/cams")]
    assert [(str(f.folder), f.prefix) for f in folder_settings(settings)] == [
        ("/srv/cams", "cams"),
        ("/srv/plain", ""),
    ]


def test_a_table_value_of_the_wrong_toml_type_is_refused_at_load(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "tailup.toml",
        'bucket = "b"\n[[watch]]\npath = "/srv/a"\ninclude = 3\n[[watch]]\npath = 4\n',
    )

    with pytest.raises(ConfigError) as caught:
        load_settings({}, config)

    text = str(caught.value)
    assert f"[[watch]] #1 (path '/srv/a') in {config}: include: got 3, a TOML integer" in text
    assert f"[[watch]] #2 in {config}: path: got 4, a TOML integer" in text


def test_a_wrong_table_value_is_refused_at_load(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "tailup.toml",
        'bucket = "b"\n[[watch]]\npath = "/srv/a"\nafter_upload = "remove"\n',
    )

    with pytest.raises(ConfigError, match=r"\[\[watch\]\] #1 \(path '/srv/a'\) in .*after_upload"):
        load_settings({}, config)


def test_status_shows_each_folders_effective_settings() -> None:
    folders = resolve_folders(
        _settings(watch=["/srv/plain"]), [{"path": "/srv/cams", "prefix": "a"}]
    )
    info = {"pid": "1", "host": "h", "folders": json.dumps([f.describe() for f in folders])}

    lines = daemon_line("n1", info).splitlines()

    assert lines[1].startswith("  folder /srv/cams: prefix 'a' *, key_template streams/")
    assert lines[2].startswith("  folder /srv/plain: prefix 'global', key_template streams/")
    assert "after_upload keep" in lines[2]


@pytest.mark.parametrize(
    ("global_prefix", "folder_prefixes", "expected"),
    [
        ("", ["site-a", "b"], [""]),  # the whole bucket covers every folder's
        ("nvr/", ["nvr/site-a", "guest/"], ["guest/", "nvr/"]),
        ("nvr/", [], ["nvr/"]),
    ],
)
def test_gc_looks_under_each_folders_prefix_once(
    global_prefix: str, folder_prefixes: list[str], expected: list[str]
) -> None:
    settings = _settings(prefix=global_prefix)
    settings._watch_tables = tuple(
        {"path": f"/srv/{n}", "prefix": p} for n, p in enumerate(folder_prefixes)
    )

    assert gc_prefixes(settings) == expected


def test_salvage_from_s3_looks_under_each_folders_prefix() -> None:
    import argparse

    from tailup.cli.commands import _salvage_request

    settings = _settings(prefix="nvr/")
    settings._watch_tables = ({"path": "/srv/guest", "prefix": "guest/"},)
    args = argparse.Namespace(node=None, streams=[], from_s3=True, older_than=None, dry_run=False)

    assert _salvage_request(args, settings).prefixes == ("guest/", "nvr/")
