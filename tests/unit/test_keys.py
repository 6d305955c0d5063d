"""S3 keys from the key template, and Redis key names (cluster-safe hash tags)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest

from tailup.keys import (
    DEFAULT_KEY_TEMPLATE,
    PLACEHOLDERS,
    KeyContext,
    RedisKeys,
    metadata_key,
    node_scope,
    render_key,
    share_scope,
    stable_prefix,
    template_problems,
)

STARTED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def context(relpath: str = "site-a/cam1.mp4", stream_id: str = "s-0123abcd") -> KeyContext:
    return KeyContext(
        stream_id=stream_id,
        relpath=PurePosixPath(relpath),
        watch_name="recordings",
        started_at=STARTED,
        hostname="nvr-01",
    )


PLACEHOLDER_CASES = {
    "stream_id": "s-0123abcd",
    "name": "cam1.mp4",
    "stem": "cam1",
    "ext": "mp4",
    "relpath": "site-a/cam1.mp4",
    "watch": "recordings",
    "date": "2024-05-06",
    "time": "070809",
    "hostname": "nvr-01",
}


def test_every_placeholder_has_a_case() -> None:
    # A new placeholder must get a rendering case below.
    assert set(PLACEHOLDERS) == set(PLACEHOLDER_CASES)


@pytest.mark.parametrize(("placeholder", "expected"), sorted(PLACEHOLDER_CASES.items()))
def test_render_each_placeholder(placeholder: str, expected: str) -> None:
    assert render_key("out/{" + placeholder + "}", context()) == "out/" + expected


def test_default_template() -> None:
    assert render_key(DEFAULT_KEY_TEMPLATE, context()) == "streams/s-0123abcd/cam1.mp4"


def test_placeholders_combine() -> None:
    key = render_key("{watch}/{date}/{time}-{stem}-{stream_id}.{ext}", context())
    assert key == "recordings/2024-05-06/070809-cam1-s-0123abcd.mp4"


@pytest.mark.parametrize(
    "name",
    [
        "café 日本語 #?%+&.mp4",
        "my recording 01.mkv",
        "  leading and trailing spaces  .mov",
        "émission à 20h.ts",
        "emoji 🎥.mp4",
        "a+b=c;d,e@f$g!.mp4",
        "[brackets] (1).mov",
        "{braces} and {name}.mp4",  # braces in a value are not template syntax
        "100%.mp4",
        "back\\slash.mp4",
        "cafe\u0301.mp4",  # decomposed é: kept as is, never normalized
        "x" * 200 + ".mp4",
    ],
)
def test_utf8_names_reach_the_key_unchanged(name: str) -> None:
    ctx = context(relpath=f"sub dir/{name}")
    assert render_key("streams/{stream_id}/{name}", ctx) == f"streams/s-0123abcd/{name}"
    assert render_key("{relpath}", ctx) == f"sub dir/{name}"
    key = render_key("{name}", ctx)
    assert key.encode("utf-8").decode("utf-8") == name
    assert unicodedata.is_normalized("NFC", key) == unicodedata.is_normalized("NFC", name)


@pytest.mark.parametrize(
    ("name", "stem", "ext"),
    [
        ("cam1.mp4", "cam1", "mp4"),
        ("archive.tar.gz", "archive.tar", "gz"),
        ("noext", "noext", ""),
        (".hidden", ".hidden", ""),
        ("CLIP.MOV", "CLIP", "MOV"),
        ("日本語.mkv", "日本語", "mkv"),
    ],
)
def test_stem_and_ext(name: str, stem: str, ext: str) -> None:
    ctx = context(relpath=name)
    assert render_key("{stem}|{ext}|{name}", ctx) == f"{stem}|{ext}|{name}"


@pytest.mark.parametrize(
    ("relpath", "expected_relpath", "expected_name"),
    [
        ("cam1.mp4", "cam1.mp4", "cam1.mp4"),
        ("site-a/cam1.mp4", "site-a/cam1.mp4", "cam1.mp4"),
        ("2024/05/06/site b/cam 1.mp4", "2024/05/06/site b/cam 1.mp4", "cam 1.mp4"),
        ("ü/日本/x.ts", "ü/日本/x.ts", "x.ts"),
    ],
)
def test_relpath_with_subfolders(relpath: str, expected_relpath: str, expected_name: str) -> None:
    ctx = context(relpath=relpath)
    assert render_key("{relpath}", ctx) == expected_relpath
    assert render_key("{name}", ctx) == expected_name


@pytest.mark.parametrize(
    ("prefix", "template", "expected"),
    [
        ("", "{name}", "cam1.mp4"),
        ("videos", "{name}", "videos/cam1.mp4"),
        ("videos/", "{name}", "videos/cam1.mp4"),
        ("videos//", "{name}", "videos/cam1.mp4"),
        ("a/b", "{name}", "a/b/cam1.mp4"),
        ("a/b/", "x/{name}", "a/b/x/cam1.mp4"),
        ("", "/{name}", "cam1.mp4"),  # no leading slash in a key
        ("videos", "/{name}", "videos/cam1.mp4"),  # and no double slash after the prefix
        ("/videos/", "{name}", "videos/cam1.mp4"),  # S3 keys never start with a slash
        ("vidéos", "{name}", "vidéos/cam1.mp4"),
    ],
)
def test_prefix_joining(prefix: str, template: str, expected: str) -> None:
    assert render_key(template, context(relpath="cam1.mp4"), prefix=prefix) == expected


def test_metadata_key_is_beside_the_object() -> None:
    assert metadata_key("streams/x/cam 1.mp4") == "streams/x/cam 1.mp4.metadata.json"


# -- template_problems --


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_KEY_TEMPLATE,
        "{relpath}",
        "{name}",
        "{stream_id}",
        "{date}/{stream_id}.{ext}",
        "{hostname}/{watch}/{relpath}",
        "{{literal braces}}/{name}",
        "日本/{name}",
    ],
)
def test_template_accepted(template: str) -> None:
    assert template_problems(template) == []


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{bogus}/{name}", "{bogus}"),
        ("{Name}/{name}", "{Name}"),
        ("{}/{name}", "{}"),
        ("{0}/{name}", "{0}"),
        ("{name.upper}", "{name.upper}"),
        ("{name[0]}/{stream_id}", "{name[0]}"),
        ("{stream_id}/{file_name}", "{file_name}"),
    ],
)
def test_template_unknown_placeholder(template: str, named: str) -> None:
    problems = template_problems(template)
    assert any("unknown placeholder" in p and named in p for p in problems), problems


@pytest.mark.parametrize("template", ["{name", "name}", "streams/{stream_id/{name}", "{name}}"])
def test_template_bad_braces(template: str) -> None:
    problems = template_problems(template)
    assert len(problems) == 1
    assert "not a valid template" in problems[0]
    assert "{{" in problems[0]  # tells how to write a literal brace


@pytest.mark.parametrize(
    "template", ["static.mp4", "{date}/{time}.mp4", "{stem}.{ext}", "{hostname}/{watch}", ""]
)
def test_template_naming_no_file(template: str) -> None:
    problems = template_problems(template)
    assert any("names no file" in p for p in problems), problems


def test_template_reports_every_problem() -> None:
    problems = template_problems("{date}/{oops}")
    assert len(problems) == 2


# -- Redis keys --


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first { and the next }, if not empty."""
    start = key.find("{")
    if start == -1:
        return key
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return key
    return key[start + 1 : end]


@pytest.mark.parametrize("prefix", ["tailup", "t-1234", "app:tailup", "ünï"])
@pytest.mark.parametrize("stream_id", ["abc", "01HX5ZQ9R7", "s-0123abcd-ef"])
def test_stream_keys_share_a_hash_tag(prefix: str, stream_id: str) -> None:
    keys = RedisKeys(prefix)
    meta, parts = keys.stream_meta(stream_id), keys.stream_parts(stream_id)
    assert meta != parts
    assert hash_tag(meta) == hash_tag(parts) == stream_id
    for key in (meta, parts):
        assert key.startswith(prefix + ":")


def test_different_streams_have_different_keys_and_tags() -> None:
    keys = RedisKeys()
    assert hash_tag(keys.stream_meta("a")) != hash_tag(keys.stream_meta("b"))
    assert keys.stream_parts("a") != keys.stream_parts("b")


@pytest.mark.parametrize("prefix", ["tailup", "other"])
def test_index_keys_are_distinct_per_scope_and_prefixed(prefix: str) -> None:
    keys = RedisKeys(prefix)
    names = []
    for scope in (node_scope("a"), node_scope("b"), share_scope("nas")):
        idx = keys.scope(scope)
        names += [idx.live, idx.ended, idx.path("/rec/cam1.ts")]
    names += [keys.node_lease("a"), keys.node_lease("b"), keys.object_claim("streams/x/cam1.ts")]
    assert len(set(names)) == len(names)
    for name in names:
        assert name.startswith(prefix + ":")
    # The index keys never collide with a stream's keys.
    assert keys.stream_meta("live") not in names
    assert keys.stream_parts("all") not in names


@pytest.mark.parametrize("stream_id", ["abc", "0123456789abcdef"])
def test_a_streams_lease_and_fence_share_its_hash_tag(stream_id: str) -> None:
    """The guard of every write reads them in the same script as the record (Cluster: one
    slot)."""
    keys = RedisKeys()
    tags = {
        hash_tag(k)
        for k in (
            keys.stream_meta(stream_id),
            keys.stream_lease(stream_id),
            keys.stream_fence(stream_id),
        )
    }
    assert tags == {stream_id}


def test_default_prefix_is_tailup() -> None:
    assert RedisKeys().stream_meta("x").startswith("tailup:")


@pytest.mark.parametrize(
    ("template", "prefix", "expected"),
    [
        (DEFAULT_KEY_TEMPLATE, "", "streams/s-0123abcd/"),
        (DEFAULT_KEY_TEMPLATE, "/tenant-a/", "tenant-a/streams/s-0123abcd/"),
        ("{hostname}/{watch}/{stream_id}-{stem}.{ext}", "", "nvr-01/recordings/s-0123abcd-"),
        ("/{stream_id}/{relpath}", "", "s-0123abcd/"),
        ("{stream_id}.ts", "", "s-0123abcd.ts"),  # the key itself: nothing moves in it
        ("{name}/{stream_id}", "", ""),  # the name first: a rename moves every key
        ("{date}/{stream_id}/{name}", "", ""),  # another day, another start
        ("{relpath}", "", ""),  # no stream id: other recordings' keys start so too
    ],
)
def test_stable_prefix_is_what_no_rename_changes_and_holds_the_stream_id(
    template: str, prefix: str, expected: str
) -> None:
    ctx = context()
    assert stable_prefix(template, ctx, prefix=prefix) == expected
    renamed = context(relpath="site-b/2026-12-07T10.mp4")
    assert stable_prefix(template, renamed, prefix=prefix) == expected
    if expected:
        assert render_key(template, ctx, prefix=prefix).startswith(expected)
        assert render_key(template, renamed, prefix=prefix).startswith(expected)


@pytest.mark.parametrize(
    ("template", "relpath", "expected"),
    [
        # A file named like an upload card: the recommended policy lets the node delete cards.
        ("streams/{stream_id}/{name}", "cam1.upload.json", "streams/s-1/cam1.upload-s-1.json"),
        # A folder named like --rpo's staging folder: the policy lets the node delete under it.
        ("streams/{relpath}", "site.tailup/cam1.ts", "streams/site-tailup/cam1-s-1.ts"),
        ("{relpath}", "a.tailup/b.tailup/c.upload.json", "a-tailup/b-tailup/c.upload-s-1.json"),
        ("streams/{relpath}", "site.tailup.ts", "streams/site.tailup.ts"),  # no folder: kept
    ],
)
def test_a_key_never_has_a_helper_objects_shape(template: str, relpath: str, expected: str) -> None:
    assert render_key(template, context(relpath=relpath, stream_id="s-1")) == expected
