"""--hls's pure part (tailup.rules.hls): what a playlist names, inside the watched folder or
outside it; whether it may be published; each file's key; and what --hls does to the settings."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from tailup.cli import main
from tailup.config import Settings, check_daemon_settings, load_settings
from tailup.config.folders import folder_settings, global_folder
from tailup.errors import ConfigError
from tailup.keys import DEFAULT_KEY_TEMPLATE
from tailup.metadata import content_type_for
from tailup.rules.hls import (
    Named,
    Publish,
    Wait,
    hls_key,
    is_playlist,
    may_publish,
    named_files,
    playlist_uris,
    resolve,
)

P = PurePosixPath

FFMPEG_TS = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:0
#EXTINF:1.000000,
live0.ts
#EXTINF:1.000000,
live1.ts
"""

FFMPEG_FMP4 = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:EVENT
#EXT-X-MAP:URI="init.mp4"
#EXTINF:1.000000,
live0.m4s
#EXT-X-ENDLIST
"""

MASTER = """#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="audio/en.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO="a"
low/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="low/iframes.m3u8"
"""


@pytest.mark.parametrize(
    ("text", "uris"),
    [
        (FFMPEG_TS, ("live0.ts", "live1.ts")),
        (FFMPEG_FMP4, ("init.mp4", "live0.m4s")),  # the init segment first
        (MASTER, ("audio/en.m3u8", "low/index.m3u8", "low/iframes.m3u8")),
        ("#EXTM3U\r\n#EXTINF:1,\r\n  a.ts  \r\n\r\n", ("a.ts",)),  # CRLF and blanks
        # A key server's URI and a preload hint (a part not written yet) are not files to wait for.
        (
            '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k.key"\n'
            '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p9.m4s"\n#EXTINF:1,\na.ts\n',
            ("a.ts",),
        ),
        ('#EXT-X-PART:DURATION=0.3,URI="p1.m4s"\n#EXTINF:1,\na.ts\na.ts\n', ("p1.m4s", "a.ts")),
        ("#EXTM3U\n", ()),
    ],
)
def test_playlist_uris(text: str, uris: tuple[str, ...]) -> None:
    assert playlist_uris(text) == uris


@pytest.mark.parametrize(
    ("uri", "playlist", "expected"),
    [
        ("live0.ts", P("live.m3u8"), P("live0.ts")),
        ("live0.ts", P("cam1/live.m3u8"), P("cam1/live0.ts")),
        ("seg/0.ts", P("cam1/live.m3u8"), P("cam1/seg/0.ts")),
        ("../shared/0.ts", P("cam1/live.m3u8"), P("shared/0.ts")),  # still inside the folder
        ("./0.ts?token=1#t=2", P("live.m3u8"), P("0.ts")),  # a query is not part of the name
        ("a%20b.ts", P("live.m3u8"), P("a b.ts")),
        ("../x.ts", P("live.m3u8"), None),  # above the watched folder
        ("../../x.ts", P("cam1/live.m3u8"), None),
        ("/var/media/x.ts", P("live.m3u8"), None),
        ("https://cdn.example/x.ts", P("live.m3u8"), None),
        ("data:video/mp2t;base64,AA", P("live.m3u8"), None),
        (".", P("live.m3u8"), None),
    ],
)
def test_resolve(uri: str, playlist: PurePosixPath, expected: PurePosixPath | None) -> None:
    assert resolve(uri, playlist) == expected


def test_named_files_splits_inside_and_outside() -> None:
    text = "#EXTM3U\n#EXTINF:1,\n../x.ts\n#EXTINF:1,\na.ts\n#EXTINF:1,\nhttp://h/b.ts\n"
    assert named_files(text, P("live.m3u8")) == Named((P("a.ts"),), ("../x.ts", "http://h/b.ts"))


@pytest.mark.parametrize(
    ("inside", "in_s3", "expected"),
    [
        ((), set(), Publish()),
        ((P("a.ts"), P("b.ts")), {P("a.ts"), P("b.ts"), P("c.ts")}, Publish()),
        ((P("a.ts"), P("b.ts")), {P("a.ts")}, Wait((P("b.ts"),))),
        ((P("init.mp4"), P("0.m4s")), set(), Wait((P("init.mp4"), P("0.m4s")))),
    ],
)
def test_may_publish(
    inside: tuple[PurePosixPath, ...], in_s3: set[PurePosixPath], expected: Publish | Wait
) -> None:
    # What is outside the folder is never waited for: a warning names it.
    named = Named(inside, ("../x.ts", "https://cdn.example/y.ts"))
    assert may_publish(named, frozenset(in_s3)) == expected


@pytest.mark.parametrize(
    ("relpath", "prefix", "key"),
    [
        (P("live.m3u8"), "", "live.m3u8"),
        (P("cam1/live0.ts"), "site-a", "site-a/cam1/live0.ts"),
        (P("cam1/live0.ts"), "/site-a/", "site-a/cam1/live0.ts"),
    ],
)
def test_hls_key_keeps_relative_paths(relpath: PurePosixPath, prefix: str, key: str) -> None:
    assert hls_key(relpath, prefix) == key


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("live.m3u8", "application/vnd.apple.mpegurl"),
        ("live0.ts", "video/mp2t"),
        ("live0.m4s", "video/iso.segment"),
        ("init.mp4", "video/mp4"),
    ],
)
def test_hls_content_types(name: str, content_type: str) -> None:
    assert content_type_for(name) == content_type


def test_is_playlist() -> None:
    assert is_playlist("LIVE.M3U8") and not is_playlist("live.m3u8.tmp")


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(watch=[tmp_path], bucket="b", **values)  # type: ignore[arg-type]


@pytest.mark.usefixtures("outside_settings_removed")
def test_hls_keys_by_relpath_and_includes_playlists(tmp_path: Path) -> None:
    """--hls makes every folder's template {relpath} and adds the HLS globs (the folder's
    resolution: tailup.config.folders); the global settings stay the other folders' defaults."""
    plain = global_folder(_settings(tmp_path))
    assert plain.key_template == DEFAULT_KEY_TEMPLATE and "*.m3u8" not in plain.include
    settings = _settings(tmp_path, hls=True)
    hls = global_folder(settings)
    assert hls.hls and hls.key_template == "{relpath}"
    assert {"*.m3u8", "*.m4s", "*.ts", "*.mp4"} <= set(hls.include)
    assert [f.key_template for f in folder_settings(settings)] == ["{relpath}"]
    check_daemon_settings(settings)


@pytest.mark.usefixtures("outside_settings_removed")
def test_hls_refuses_another_key_template(tmp_path: Path) -> None:
    settings = _settings(tmp_path, hls=True, key_template="{date}/{name}")
    with pytest.raises(ConfigError, match=r"--key-template.*cannot be used with.*--hls"):
        check_daemon_settings(settings)


@pytest.mark.usefixtures("outside_settings_removed")
def test_tailup_run_refuses_hls_with_a_key_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--watch", str(tmp_path), "--bucket", "b", "--hls", "--key-template", "{name}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--key-template (TAILUP_KEY_TEMPLATE): '{name}' cannot be used with --hls" in err


@pytest.mark.usefixtures("outside_settings_removed")
def test_hls_refuses_a_folder_key_template(tmp_path: Path) -> None:
    cam = tmp_path / "cam"
    cam.mkdir()
    config = tmp_path / "t.toml"
    config.write_text(
        f'bucket = "b"\nhls = true\n[[watch]]\npath = "{cam}"\nprefix = "site"\n'
        f'[[watch]]\npath = "{tmp_path / "x"}"\nkey_template = "{{name}}"\n',
        encoding="utf-8",
    )
    (tmp_path / "x").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config)  # refused at load: the folder's table is wrong, for any command
    assert (
        f"[[watch]] #2 (path '{tmp_path / 'x'}') in {config}: key_template: got '{{name}}': it "
        f"cannot be used with hls (--hls (TAILUP_HLS, hls in {config})), which keys every file"
    ) in str(caught.value)
