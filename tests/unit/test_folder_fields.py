"""Issue 20.3, the per-folder fields added to prefix, key_template, include, after_upload and
storage_class: ``keep_local`` (a guest folder with shorter retention), ``hls`` (one folder live
HLS) and ``tags`` (an inline table or an array of KEY=VALUE; ``tag`` another name of it). The
resolution is pure (tailup.config.folders.resolve_folders), table-tested here with its refusals,
which name the table, the field, what was wrong and what is accepted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tailup.config import Settings, check_daemon_settings, load_settings
from tailup.config.folders import FolderSettings, folder_settings, resolve_folders
from tailup.errors import ConfigError
from tailup.keys import DEFAULT_KEY_TEMPLATE
from tailup.objectoptions import TAGS_FORM

HLS_GLOBS = ("*.m3u8", "*.m4s", "*.ts", "*.mp4")
HOUR_S = 3600.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TAILUP_ variable from the outside, and a working directory without a .env."""
    for name in list(os.environ):
        if name.startswith("TAILUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _settings(**given: Any) -> Settings:
    base: dict[str, Any] = {"bucket": "b", "include": ["*.mkv"], "tag": ["site=hq"]}
    return Settings(**{**base, **given})


def _one(table: dict[str, Any], **given: Any) -> FolderSettings:
    return resolve_folders(_settings(**given), [{"path": "/srv/a", **table}])[0]


@pytest.mark.parametrize(
    ("table", "given", "keep_local_s"),
    [
        ({}, {}, 0.0),  # off, as --keep-local is by default
        ({}, {"keep_local": "7d"}, 7 * 24 * HOUR_S),  # --keep-local is every folder's default
        ({"keep_local": "2h"}, {"keep_local": "7d"}, 2 * HOUR_S),  # the guest folder's shorter
        ({"keep_local": 90}, {}, 90.0),  # seconds, as a TOML number
        ({"keep_local": 0}, {"keep_local": "7d"}, 0.0),  # 0: off for this folder alone
    ],
)
def test_keep_local_is_the_tables_else_the_global(
    table: dict[str, Any], given: dict[str, Any], keep_local_s: float
) -> None:
    folder = _one(table, **given)
    assert folder.keep_local_s == keep_local_s
    assert ("keep_local" in folder.own) is ("keep_local" in table)


@pytest.mark.parametrize(
    ("table", "given", "hls", "key_template", "include"),
    [
        ({}, {}, False, DEFAULT_KEY_TEMPLATE, ("*.mkv",)),
        ({"hls": True}, {}, True, "{relpath}", ("*.mkv", *HLS_GLOBS)),
        # Its own globs and the HLS ones; the global template is the other folders'.
        ({"hls": True, "include": ["*.ts"]}, {"key_template": "{date}/{name}"}, True, "{relpath}",
         ("*.ts", "*.m3u8", "*.m4s", "*.mp4")),
        ({"hls": True, "key_template": "{relpath}"}, {}, True, "{relpath}", ("*.mkv", *HLS_GLOBS)),
        ({}, {"hls": True}, True, "{relpath}", ("*.mkv", *HLS_GLOBS)),  # --hls: every folder's
        ({"hls": False}, {"hls": True}, False, DEFAULT_KEY_TEMPLATE, ("*.mkv",)),  # but this one
        ({"hls": False, "key_template": "{watch}/{name}"}, {"hls": True}, False, "{watch}/{name}",
         ("*.mkv",)),
    ],
)  # fmt: skip
def test_hls_is_the_tables_else_the_global_and_keys_by_relpath(
    table: dict[str, Any],
    given: dict[str, Any],
    hls: bool,
    key_template: str,
    include: tuple[str, ...],
) -> None:
    folder = _one(table, **given)
    assert (folder.hls, folder.key_template, folder.include) == (hls, key_template, include)


@pytest.mark.parametrize(
    ("table", "tags"),
    [
        ({}, (("site", "hq"),)),  # --tag's
        ({"tags": {"site": "north", "cam": "3"}}, (("site", "north"), ("cam", "3"))),
        ({"tags": ["site=north", "cam=3"]}, (("site", "north"), ("cam", "3"))),
        ({"tags": "site=north"}, (("site", "north"),)),
        ({"tag": ["site=north"]}, (("site", "north"),)),  # the older name
        ({"tag": {"site": "north"}}, (("site", "north"),)),
        ({"tags": {}}, ()),  # none for this folder
        ({"tags": {"note": "a=b c"}}, (("note", "a=b c"),)),  # '=' is a VALUE's to have
    ],
)
def test_tags_take_a_table_or_key_value_strings(
    table: dict[str, Any], tags: tuple[tuple[str, str], ...]
) -> None:
    folder = _one(table)
    assert folder.object_options.tags == tags
    assert ("tags" in folder.own) is bool(table)


def test_status_shows_the_new_fields_and_marks_a_tables() -> None:
    table = {"keep_local": "2h", "tags": {"site": "north"}, "hls": True}
    shown = _one(table).describe()
    assert (shown["keep_local"], shown["tags"], shown["hls"]) == ("7200s *", "site=north *", "on *")
    plain = _one({}).describe()
    assert (plain["keep_local"], plain["tags"], plain["hls"]) == ("off", "site=hq", "off")


LABEL = "[[watch]] #1 (path '/srv/a') in /etc/t.toml: "


@pytest.mark.parametrize(
    ("table", "given", "expected"),
    [
        pytest.param(
            {"tags": {"site": "north"}, "tag": ["cam=3"]},
            {},
            "both tags and tag are given (tag is another name of tags). Accepted: one of them; "
            f"tags = {TAGS_FORM}",
            id="tags-and-tag",
        ),
        pytest.param(
            {"tags": {"cam": 3}},
            {},
            "tags: got {'cam': 3}: the value of 'cam' is 3, not a string in quotes. Accepted: an "
            "inline table of strings",
            id="tags-value-not-a-string",
        ),
        pytest.param(
            {"tags": {"a=b": "c"}},
            {},
            "tags: got {'a=b': 'c'}: the KEY 'a=b' has '=', which a tag KEY here cannot have",
            id="tags-key-with-equals",
        ),
        pytest.param(
            {"tags": ["site=north", 3]},
            {},
            "tags: got ['site=north', 3]: the array holds 3, not a \"KEY=VALUE\" string",
            id="tags-array-item",
        ),
        pytest.param(
            {"tags": 3}, {}, "tags: got 3: 3 is neither a table nor an array", id="tags-number"
        ),
        pytest.param(
            {"tags": {"aws:x": "1"}},
            {},
            "tags: got {'aws:x': '1'}: the KEY 'aws:x' starts with aws:, which S3 keeps for "
            f"itself. Accepted: {TAGS_FORM}",
            id="tags-aws-key",
        ),
        pytest.param(
            {"tag": ["nothing"]},
            {},
            "tag: got ['nothing']: 'nothing' has no '=' (KEY=VALUE). Accepted: an inline table",
            id="tag-alias-named-as-given",
        ),
        pytest.param(
            {"tags": {f"k{n}": "v" for n in range(11)}},
            {},
            f"tags: got { {f'k{n}': 'v' for n in range(11)}!r}: 11 tags given; S3 keeps at "
            "most 10 on an object",
            id="tags-too-many",
        ),
        pytest.param(
            {"keep_local": "a week"},
            {},
            "keep_local: got 'a week': 'a week' is not a number of seconds",
            id="keep-local-form",
        ),
        pytest.param(
            {"keep_local": -5},
            {},
            "keep_local: got -5: -5 is negative (0 turns it off). Accepted: a number of seconds",
            id="keep-local-negative",
        ),
        pytest.param(
            {"tagz": {"site": "north"}},
            {},
            "unknown field 'tagz'; did you mean 'tags'? Fields are: path, prefix, key_template, "
            "include, after_upload, keep_local, storage_class, tags (or tag), hls",
            id="unknown-field-near-the-alias",
        ),
        pytest.param(
            {"min_free": "10GiB"},
            {},
            "min_free: free space is a file system's, not a folder's: it is set once, as "
            "--min-free (min_free at the file's top level), for every watched folder's file "
            "system. Accepted: no min_free in a [[watch]] table",
            id="min-free",
        ),
        pytest.param(
            {"hls": True, "key_template": "{date}/{name}"},
            {},
            "key_template: got '{date}/{name}': it cannot be used with hls (hls = true in this "
            "table), which keys every file of the folder by its path below it ({relpath}) so "
            "that a playlist's segments are beside it. Accepted: no key_template in an HLS "
            "folder's table",
            id="hls-and-key-template",
        ),
        pytest.param(
            {"key_template": "{name}"},
            {"hls": True},
            "key_template: got '{name}': it cannot be used with hls (--hls (TAILUP_HLS))",
            id="global-hls-and-key-template",
        ),
        pytest.param(
            {"hls": "maybe"}, {}, "hls: got 'maybe': Input should be a valid boolean", id="hls"
        ),
    ],
)
def test_a_wrong_field_is_refused_naming_the_table_the_field_and_the_forms(
    table: dict[str, Any], given: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_folders(_settings(**given), [{"path": "/srv/a", **table}], Path("/etc/t.toml"))
    assert LABEL + expected in str(caught.value)


def test_an_hls_folder_beside_others_with_a_global_key_template_is_accepted(
    tmp_path: Path,
) -> None:
    live, cams = tmp_path / "live", tmp_path / "cams"
    live.mkdir(), cams.mkdir()
    config = tmp_path / "t.toml"
    config.write_text(
        f'bucket = "b"\nkey_template = "{{watch}}/{{name}}"\n'
        f'[[watch]]\npath = "{live}"\nhls = true\nprefix = "live"\n',
        encoding="utf-8",
    )
    settings = load_settings({"watch": [cams]}, config)
    check_daemon_settings(settings)
    got = {f.folder: (f.hls, f.key_template) for f in folder_settings(settings)}
    assert got == {live: (True, "{relpath}"), cams: (False, "{watch}/{name}")}


def _load(tmp_path: Path, table: str) -> Settings:
    config = tmp_path / "t.toml"
    config.write_text(f'bucket = "b"\n[[watch]]\npath = "/srv/a"\n{table}\n', encoding="utf-8")
    return load_settings({}, config)


def test_a_config_file_gives_keep_local_hls_and_tags(tmp_path: Path) -> None:
    settings = _load(
        tmp_path, 'keep_local = "12h"\nhls = true\ntags = { site = "north", cam = "3" }'
    )
    (folder,) = folder_settings(settings)
    assert (folder.keep_local_s, folder.hls) == (12 * HOUR_S, True)
    assert folder.object_options.tags == (("site", "north"), ("cam", "3"))


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('hls = "yes"', "hls: got 'yes', a TOML string. Accepted: true or false"),
        ("keep_local = true", "keep_local: got True, a TOML boolean. Accepted: a number of"),
        ('tags = "site"', "tags: got 'site': 'site' has no '=' (KEY=VALUE). Accepted: an inline"),
        ("[watch.tags]\nsite = 1", "tags: got {'site': 1}: the value of 'site' is 1, not a"),
    ],
)
def test_a_config_file_with_a_wrong_field_type_is_refused(
    tmp_path: Path, table: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, table)
    assert f"[[watch]] #1 (path '/srv/a') in {tmp_path / 't.toml'}: {expected}" in str(caught.value)
