"""The pure decisions of many daemons on one Redis (issue 9), a row per case: a recording's
stream id (tailup.identity.stream_id_for), its name in a scope's path index (tailup.keys),
what S3 knows of a file Redis has no record of (tailup.recovery), whether a node lease's holder
is provably gone (tailup.nodelease), the settings that name nodes, shares, leases and how long
records are kept (tailup.config), and what a partial record is (tailup.model)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tailup.checksums import ChecksumAlgorithm, ChecksumType
from tailup.config import load_settings, parse_shared_watch
from tailup.errors import ConfigError
from tailup.identity import FileIdentity, stream_id_for
from tailup.keys import index_path, node_scope, share_scope
from tailup.model import PartialRecord, StreamRecord, StreamState
from tailup.nodelease import Holder, process_started, provably_gone
from tailup.recovery import Found, judge, s3_may_know
from tailup.s3 import UploadInfo

DEV, INO, BORN, GEN = 2049, 1234, 1_700_000_000_123_456_789, 77
IDENTITY = FileIdentity(DEV, INO, BORN, GEN)
NODE = node_scope("cam-host")
SHARE = share_scope("nas")


# -- stream ids --


def test_the_same_recording_gets_the_same_id() -> None:
    again = FileIdentity(DEV, INO, BORN, GEN)
    assert stream_id_for(NODE, IDENTITY) == stream_id_for(NODE, again)
    assert stream_id_for(SHARE, IDENTITY) == stream_id_for(SHARE, again)
    assert stream_id_for(NODE, IDENTITY, life=3) == stream_id_for(NODE, again, life=3)


def test_a_stream_id_is_stable_across_versions() -> None:
    # S3 is asked about the key an id names after Redis lost the record: a change of the
    # derivation would upload every finished recording again under new keys.
    assert stream_id_for(NODE, IDENTITY) == "fdd2371dda0352e2"
    assert stream_id_for(SHARE, IDENTITY) == "249dd21d8059a385"


@pytest.mark.parametrize("scope", [NODE, SHARE])
@pytest.mark.parametrize(
    ("changes", "life"),
    [
        pytest.param({"inode": INO + 1}, 0, id="another inode"),
        pytest.param({"birth_ns": BORN + 1}, 0, id="another birth time"),
        pytest.param({"birth_ns": 0}, 0, id="no birth time kept"),
        pytest.param({"generation": GEN + 1}, 0, id="another inode generation"),
        pytest.param({"generation": -1}, 0, id="no generation kept"),
        pytest.param({}, 1, id="another life of the same inode"),
    ],
)
def test_another_recording_gets_another_id(scope: str, changes: dict[str, int], life: int) -> None:
    fields: dict[str, int] = {
        "device": DEV,
        "inode": INO,
        "birth_ns": BORN,
        "generation": GEN,
        **changes,
    }
    other = FileIdentity(**fields)
    assert stream_id_for(scope, other, life=life) != stream_id_for(scope, IDENTITY)


def test_every_life_of_an_inode_has_its_own_id() -> None:
    ids = {stream_id_for(NODE, IDENTITY, life=n) for n in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (node_scope("a"), node_scope("b")),
        (share_scope("a"), share_scope("b")),
        (node_scope("nas"), share_scope("nas")),
    ],
)
def test_the_same_file_in_another_scope_gets_another_id(one: str, other: str) -> None:
    assert stream_id_for(one, IDENTITY) != stream_id_for(other, IDENTITY)


@pytest.mark.parametrize(
    ("scope", "same"),
    [
        pytest.param(NODE, False, id="node: the device is part of who a file is"),
        pytest.param(SHARE, True, id="share: every NFS client sees another st_dev"),
    ],
)
def test_the_device_counts_in_a_node_scope_only(scope: str, same: bool) -> None:
    elsewhere = FileIdentity(DEV + 7, INO, BORN, GEN)
    assert (stream_id_for(scope, elsewhere) == stream_id_for(scope, IDENTITY)) is same


def test_a_stream_id_is_short_hex() -> None:
    sid = stream_id_for(NODE, IDENTITY)
    assert len(sid) == 16 and int(sid, 16) >= 0


# -- the path index --


@pytest.mark.parametrize(
    ("scope", "path", "root", "entry"),
    [
        # A node's own folders: the absolute path, whatever the root.
        (NODE, "/rec/cam1/a.mp4", "/rec", "/rec/cam1/a.mp4"),
        (NODE, "/rec/a.mp4", "", "/rec/a.mp4"),
        # A shared folder: the path below it, so that nodes mounting it elsewhere agree.
        (SHARE, "/mnt/nas/cam1/a.mp4", "/mnt/nas", "cam1/a.mp4"),
        (SHARE, "/mnt/nas/a.mp4", "/mnt/nas/", "a.mp4"),
        (SHARE, "/srv/share/é clip #1.mp4", "/srv/share", "é clip #1.mp4"),
        # Not below the root (a sibling with the same beginning, or no root): the path itself.
        (SHARE, "/mnt/nas2/a.mp4", "/mnt/nas", "/mnt/nas2/a.mp4"),
        (SHARE, "/other/a.mp4", "/mnt/nas", "/other/a.mp4"),
        (SHARE, "/mnt/nas/a.mp4", "", "/mnt/nas/a.mp4"),
    ],
)
def test_index_path(scope: str, path: str, root: str, entry: str) -> None:
    assert index_path(scope, path, root) == entry


def test_nodes_mounting_a_share_at_other_paths_name_its_files_alike() -> None:
    one = index_path(SHARE, "/mnt/nas/site-a/cam1.ts", "/mnt/nas")
    other = index_path(SHARE, "/media/recordings/site-a/cam1.ts", "/media/recordings")
    assert one == other == "site-a/cam1.ts"


# -- what S3 knows (tailup.recovery) --

SID, SIZE, MTIME = "a1b2c3d4e5f6a7b8", 123_456_789, 1_700_000_001_000_000_000
KEY = f"streams/{SID}/cam1.mp4"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def sidecar(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "stream_id": SID,
        "size_bytes": SIZE,
        "source": {"path": "/rec/cam1.mp4", "mtime_ns": MTIME},
    }
    base.update(changes)
    return base


def upload(upload_id: str, minutes: int, key: str = KEY) -> UploadInfo:
    return UploadInfo(key, upload_id, T0 + timedelta(minutes=minutes))


JUDGE_CASES = [
    # (id, sidecar, object size, uploads, found)
    ("sidecar of this stream, size and mtime", sidecar(), SIZE, [], Found.COMPLETED),
    (
        "an old sidecar, without mtime_ns: size and id decide",
        sidecar(source={"path": "/rec/cam1.mp4"}),
        SIZE,
        [],
        Found.COMPLETED,
    ),
    (
        "an old sidecar, without source",
        {"stream_id": SID, "size_bytes": SIZE},
        SIZE,
        [],
        Found.COMPLETED,
    ),
    (
        "a sidecar with mtime_ns 0 (not known)",
        sidecar(source={"mtime_ns": 0}),
        SIZE,
        [],
        Found.COMPLETED,
    ),
    ("sidecar of another stream id", sidecar(stream_id="0" * 16), SIZE, [], Found.OTHER),
    # The file is SIZE bytes; the sidecar and its object describe a shorter version.
    ("sidecar of another size", sidecar(size_bytes=SIZE - 1), SIZE - 1, [], Found.OTHER),
    ("the object's size differs from the sidecar's", sidecar(), SIZE + 1, [], Found.OTHER),
    ("a sidecar without its object", sidecar(), None, [], Found.OTHER),
    ("mtime differs", sidecar(source={"mtime_ns": MTIME + 1}), SIZE, [], Found.OTHER),
    ("an unreadable sidecar (read as {})", {}, SIZE, [], Found.OTHER),
    ("a sidecar of another shape", sidecar(source="cam1.mp4"), SIZE, [], Found.OTHER),
    (
        "a sidecar wins over open uploads",
        sidecar(),
        SIZE,
        [upload("u1", 0)],
        Found.COMPLETED,
    ),
    ("an object tailup did not describe", None, SIZE, [], Found.OTHER),
    ("an object and an open upload at its key", None, 10, [upload("u1", 0)], Found.OTHER),
    ("nothing at all", None, None, [], Found.NOTHING),
    ("one open upload at its key", None, None, [upload("u1", 0)], Found.IN_FLIGHT),
    (
        "uploads at other keys only (a longer key, the sidecar's key)",
        None,
        None,
        [upload("u1", 0, KEY + ".part"), upload("u2", 1, KEY + ".metadata.json")],
        Found.NOTHING,
    ),
]


@pytest.mark.parametrize(
    ("sidecar_doc", "object_size", "uploads", "found"),
    [pytest.param(*case[1:], id=case[0]) for case in JUDGE_CASES],
)
def test_judge(
    sidecar_doc: dict[str, Any] | None,
    object_size: int | None,
    uploads: list[UploadInfo],
    found: Found,
) -> None:
    finding = judge(
        stream_id=SID,
        size=SIZE,
        mtime_ns=MTIME,
        key=KEY,
        sidecar=sidecar_doc,
        object_size=object_size,
        uploads=uploads,
    )
    assert finding.found is found, finding.reason
    assert finding.reason
    if found is Found.COMPLETED:
        assert finding.sidecar == sidecar_doc
    if found is not Found.IN_FLIGHT:
        assert (finding.upload_id, finding.orphans) == ("", ())


@pytest.mark.parametrize(
    ("file_size", "found"),
    [(SIZE, Found.COMPLETED), (SIZE + 1, Found.OTHER), (SIZE - 1, Found.OTHER)],
)
def test_judge_compares_the_file_size_with_the_sidecar(file_size: int, found: Found) -> None:
    finding = judge(
        stream_id=SID,
        size=file_size,
        mtime_ns=MTIME,
        key=KEY,
        sidecar=sidecar(),
        object_size=SIZE,
        uploads=[],
    )
    assert finding.found is found


def test_judge_adopts_the_newest_upload_and_names_the_others_orphans() -> None:
    uploads = [
        upload("middle", 5),
        upload("elsewhere-newest", 60, KEY + "x"),  # another key: neither adopted nor orphan
        upload("newest", 9),
        upload("oldest", 1),
    ]
    finding = judge(
        stream_id=SID,
        size=SIZE,
        mtime_ns=MTIME,
        key=KEY,
        sidecar=None,
        object_size=None,
        uploads=uploads,
    )
    assert finding.found is Found.IN_FLIGHT
    assert finding.upload_id == "newest"
    assert sorted(finding.orphans) == ["middle", "oldest"]


def test_judge_one_upload_has_no_orphans() -> None:
    finding = judge(
        stream_id=SID,
        size=SIZE,
        mtime_ns=MTIME,
        key=KEY,
        sidecar=None,
        object_size=None,
        uploads=[upload("only", 0), upload("other-key", 1, "streams/other/cam1.mp4")],
    )
    assert (finding.found, finding.upload_id, finding.orphans) == (Found.IN_FLIGHT, "only", ())


def _record(algorithm: ChecksumAlgorithm = ChecksumAlgorithm.CRC32) -> StreamRecord:
    return StreamRecord(
        stream_id=SID,
        path="/w/cam1.mp4",
        watch_root="/w",
        bucket="b",
        key=KEY,
        base_part_size=5 << 20,
        checksum=algorithm,
        checksum_type="full_object",
    )


@pytest.mark.parametrize(
    ("listed", "algorithm", "kind"),
    [
        # AWS names both: the upload's own are kept.
        ((ChecksumAlgorithm.CRC32, ChecksumType.COMPOSITE), ChecksumAlgorithm.CRC32, "composite"),
        ((ChecksumAlgorithm.CRC32C, ChecksumType.COMPOSITE), ChecksumAlgorithm.CRC32C, "composite"),
        # moto names the algorithm only: the type tailup gives it now.
        ((ChecksumAlgorithm.CRC64NVME, None), ChecksumAlgorithm.CRC64NVME, "full_object"),
        # SeaweedFS names neither: today's settings, a guess (a refusal restarts the upload).
        ((None, None), ChecksumAlgorithm.CRC32, "full_object"),
    ],
)
def test_an_adopted_upload_keeps_its_own_checksum(
    listed: tuple[ChecksumAlgorithm | None, ChecksumType | None],
    algorithm: ChecksumAlgorithm,
    kind: str,
) -> None:
    found = UploadInfo(KEY, "u1", datetime(2026, 1, 1, tzinfo=UTC), listed[0], listed[1])
    finding = judge(
        stream_id=SID,
        size=SIZE,
        mtime_ns=MTIME,
        key=KEY,
        sidecar=None,
        object_size=None,
        uploads=[found],
    )
    record = finding.adopt(_record())
    assert (record.upload_id, record.adopted_upload) == ("u1", "u1")
    assert (record.checksum, record.checksum_type) == (algorithm, kind)


def test_an_upload_with_a_checksum_tailup_does_not_send_is_not_adopted() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    sha = UploadInfo(KEY, "sha", at + timedelta(seconds=9), foreign_checksum=True)
    ours = UploadInfo(KEY, "ours", at)
    finding = judge(
        stream_id=SID,
        size=SIZE,
        mtime_ns=MTIME,
        key=KEY,
        sidecar=None,
        object_size=None,
        uploads=[sha, ours],
    )
    assert (finding.found, finding.upload_id, finding.orphans) == (
        Found.IN_FLIGHT,
        "ours",
        ("sha",),
    )
    alone = judge(
        stream_id=SID,
        size=SIZE,
        mtime_ns=MTIME,
        key=KEY,
        sidecar=None,
        object_size=None,
        uploads=[sha],
    )
    assert (alone.found, alone.orphans) == (Found.NOTHING, ("sha",))


S = 1_000_000_000
STARTED = 1_000_000 * S  # when this daemon started
NOW = STARTED + 10 * 86400 * S  # it has run for 10 days
DAY = 86400.0


@pytest.mark.parametrize(
    ("born_ns", "keep_s", "redis_lost", "may_know"),
    [
        pytest.param(NOW - S, 30 * DAY, False, False, id="born since start: seen from its start"),
        pytest.param(STARTED, 30 * DAY, False, False, id="born as the daemon started"),
        pytest.param(NOW - S, 30 * DAY, True, True, id="Redis lost its data: anything may be"),
        pytest.param(STARTED - S, 30 * DAY, False, True, id="born before this daemon started"),
        pytest.param(0, 30 * DAY, False, True, id="no birth time known"),
        pytest.param(-5, 30 * DAY, False, True, id="a negative birth time"),
        pytest.param(NOW - 2 * 86400 * S, DAY, False, True, id="older than --keep-records"),
        pytest.param(NOW - 3600 * S, DAY, False, False, id="younger than --keep-records"),
        pytest.param(STARTED + S, 0.0, False, False, id="records kept forever"),
    ],
)
def test_s3_may_know(born_ns: int, keep_s: float, redis_lost: bool, may_know: bool) -> None:
    got = s3_may_know(
        born_ns=born_ns,
        started_ns=STARTED,
        now_ns=NOW,
        keep_records_s=keep_s,
        redis_lost=redis_lost,
    )
    assert got is may_know


# -- the node lease (tailup.nodelease) --

HERE = Holder("cam-host", "boot-1", 4242, 1000, "t0")


def test_a_holder_round_trips() -> None:
    holder = Holder("cam-host.site_a", "6f1c-boot", 31337, 987654, "abcd1234")
    assert Holder.decode(holder.encode()) == holder
    assert "31337" in holder.describe() and "cam-host.site_a" in holder.describe()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "host|boot|1|2",  # a field short
        "host|boot|1|2|token|more",  # a field too many
        "host|boot|pid|2|token",  # the pid is not a number
        "host|boot|1|started|token",
        "host|boot|1.5|2|token",
    ],
)
def test_garbage_decodes_to_none(text: str) -> None:
    assert Holder.decode(text) is None


def _started(table: dict[int, int]) -> Callable[[int], int | None]:
    return table.get


@pytest.mark.parametrize(
    ("holder", "processes", "gone"),
    [
        pytest.param(
            Holder("other-host", "boot-1", 4242, 1000, "t1"),
            {},
            False,
            id="another host: it may well be alive",
        ),
        pytest.param(
            Holder("cam-host", "boot-0", 4242, 1000, "t1"),
            {4242: 1000},
            True,
            id="the machine booted since",
        ),
        pytest.param(
            Holder("cam-host", "boot-1", 77, 500, "t1"),
            {77: 500},
            False,
            id="the same pid with the same start: alive",
        ),
        pytest.param(
            Holder("cam-host", "boot-1", 77, 500, "t1"),
            {},
            True,
            id="its pid is gone",
        ),
        pytest.param(
            Holder("cam-host", "boot-1", 77, 500, "t1"),
            {77: 900},
            True,
            id="its pid reused by a process that started later",
        ),
    ],
)
def test_provably_gone(holder: Holder, processes: dict[int, int], gone: bool) -> None:
    assert provably_gone(holder, HERE, _started(processes)) is gone


def test_another_host_is_never_asked_about_its_pid() -> None:
    asked: list[int] = []

    def started_of(pid: int) -> int | None:
        asked.append(pid)
        return None

    assert not provably_gone(Holder("far", "boot-9", 1, 1, "t"), HERE, started_of)
    assert asked == []


def test_process_started_of_this_process() -> None:
    started = process_started(os.getpid())
    assert isinstance(started, int) and started > 0
    assert process_started(os.getpid()) == started  # a start time, not a clock


def test_process_started_of_a_pid_that_cannot_exist() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert process_started(pid_max + 1) is None


def _uptime_ticks() -> float:
    return float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK")


def test_process_started_reads_the_start_time_of_a_process_with_a_strange_name(
    tmp_path: Path,
) -> None:
    # The command name in /proc/PID/stat may hold spaces and parentheses.
    sleep = shutil.which("sleep")
    assert sleep is not None
    strange = tmp_path / "x) y (z"
    shutil.copy(sleep, strange)
    before = _uptime_ticks()
    child = subprocess.Popen([str(strange), "60"])
    try:
        after = _uptime_ticks()
        started = process_started(child.pid)
        assert started is not None
        tick = os.sysconf("SC_CLK_TCK")
        assert before - tick <= started <= after + tick
        mine = process_started(os.getpid())
        assert mine is not None and mine <= started
    finally:
        child.kill()
        child.wait()
    assert process_started(child.pid) is None  # ended and reaped: no such process


# -- settings --


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TAILUP_ variable from the outside, and a working folder without a .env file."""
    for name in list(os.environ):
        if name.upper().startswith("TAILUP_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.mark.parametrize(
    ("text", "name", "folder"),
    [
        ("/srv/nas", "/srv/nas", "/srv/nas"),  # unnamed: named by its path
        ("/srv/nas/", "/srv/nas", "/srv/nas"),
        ("/srv/my nas", "/srv/my nas", "/srv/my nas"),
        ("/srv/a=b", "/srv/a=b", "/srv/a=b"),  # an '=' in a folder name
        ("/", "/", "/"),
        ("nas=/mnt/nas", "nas", "/mnt/nas"),
        ("site-a.nas_1=/media/rec", "site-a.nas_1", "/media/rec"),
        ("nas=/mnt/a=b", "nas", "/mnt/a=b"),
    ],
)
def test_parse_shared_watch(text: str, name: str, folder: str) -> None:
    assert parse_shared_watch(text) == (name, Path(folder))


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("", "names no folder"),
        ("nas=", "'nas=' names no folder"),
        ("srv/nas", "'srv/nas' is a relative path"),
        ("nas=mnt/nas", "'mnt/nas' is a relative path"),
        ("nas=./x", "'./x' is a relative path"),
        ("my nas=/mnt/x", "the share name 'my nas' is not"),
        ("a|b=/mnt/x", "the share name 'a|b' is not"),
        ("a:b=/mnt/x", "the share name 'a:b' is not"),
        ("n" * 65 + "=/mnt/x", "the share name '" + "n" * 65 + "' is not"),
    ],
)
def test_parse_shared_watch_refuses(text: str, what: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_shared_watch(text)
    assert what in str(info.value)


def test_fleet_defaults() -> None:
    settings = load_settings({})
    assert settings.node_id == socket.gethostname()
    assert settings.lease_ttl == 30.0
    assert settings.keep_records == 30 * 86400.0
    assert settings.shared_watch == [] and settings.shares == []


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"node_id": "cam-host.site_1"}, "node_id", "cam-host.site_1"),
        ({"node_id": "n" * 64}, "node_id", "n" * 64),
        ({"lease_ttl": "3"}, "lease_ttl", 3.0),
        ({"lease_ttl": "90s"}, "lease_ttl", 90.0),
        ({"lease_ttl": "1h"}, "lease_ttl", 3600.0),
        ({"keep_records": "30d"}, "keep_records", 30 * 86400.0),
        ({"keep_records": "12h"}, "keep_records", 12 * 3600.0),
        ({"keep_records": "0"}, "keep_records", 0.0),
        (
            {"shared_watch": ["nas=/mnt/nas", "/srv/share"]},
            "shares",
            [("nas", Path("/mnt/nas")), ("/srv/share", Path("/srv/share"))],
        ),
        ({"shared_watch": "nas=/mnt/a, /srv/b"}, "shared_watch", ["nas=/mnt/a", "/srv/b"]),
    ],
)
def test_fleet_settings_accepted(overrides: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(load_settings(overrides), field) == expected


def test_shared_watch_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILUP_SHARED_WATCH", "nas=/mnt/nas,/srv/my share")
    assert load_settings({}).shares == [
        ("nas", Path("/mnt/nas")),
        ("/srv/my share", Path("/srv/my share")),
    ]


@pytest.mark.parametrize(
    ("overrides", "flag", "what"),
    [
        ({"node_id": ""}, "--node-id", "'' is not a node id"),
        ({"node_id": "my host"}, "--node-id", "'my host' is not a node id"),
        ({"node_id": "n" * 65}, "--node-id", "is not a node id"),
        ({"node_id": "node|1"}, "--node-id", "'node|1' is not a node id"),  # the lease separator
        ({"node_id": "node:1"}, "--node-id", "'node:1' is not a node id"),
        ({"lease_ttl": "2"}, "--lease-ttl", "2 s is outside 3 s..1 h"),
        ({"lease_ttl": "0"}, "--lease-ttl", "0 s is outside 3 s..1 h"),
        ({"lease_ttl": "3601"}, "--lease-ttl", "3601 s is outside 3 s..1 h"),
        ({"lease_ttl": "2h"}, "--lease-ttl", "7200 s is outside 3 s..1 h"),
        ({"lease_ttl": "soon"}, "--lease-ttl", "'soon' is not a number of seconds"),
        ({"keep_records": -5.0}, "--keep-records", "-5 is negative"),
        ({"keep_records": "-1d"}, "--keep-records", "'-1d' is not a number of seconds"),
        ({"keep_records": "forever"}, "--keep-records", "'forever' is not a number of seconds"),
        ({"shared_watch": ["nas=/a", "nas=/b"]}, "--shared-watch", "'nas' is given twice"),
        ({"shared_watch": ["/a", "/a/"]}, "--shared-watch", "'/a' is given twice"),
        ({"shared_watch": ["nas=rel"]}, "--shared-watch", "'rel' is a relative path"),
        ({"shared_watch": ["my nas=/x"]}, "--shared-watch", "the share name 'my nas' is not"),
        ({"shared_watch": ["nas="]}, "--shared-watch", "'nas=' names no folder"),
    ],
)
def test_fleet_setting_refusals_name_the_setting_and_what_is_wrong(
    overrides: dict[str, Any], flag: str, what: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides)
    message = str(info.value)
    env_var = "TAILUP_" + flag.removeprefix("--").replace("-", "_").upper()
    assert flag in message and env_var in message
    assert what in message
    assert "Accepted" in message


# -- partial records --

WHOLE: dict[str, str] = StreamRecord(
    stream_id="s1",
    path="/rec/cam1.ts",
    watch_root="/rec",
    bucket="b",
    key="streams/s1/cam1.ts",
    base_part_size=8 << 20,
    state=StreamState.COMPLETED,
).to_hash()


def test_a_whole_record_loads() -> None:
    assert StreamRecord.from_hash(dict(WHOLE)).to_hash() == WHOLE


@pytest.mark.parametrize(
    ("data", "what"),
    [
        pytest.param({}, "lacks stream_id, path, base_part_size", id="empty"),
        pytest.param(
            # What a part commit after a FLUSHALL used to leave: counters, nothing else.
            {
                "next_part_to_upload": "3",
                "total_bytes_sent": "16777216",
                "last_activity_at_utc": "2026-12-01T10:00:00+00:00",
            },
            "lacks stream_id, path, base_part_size",
            id="counters only",
        ),
        pytest.param({k: v for k, v in WHOLE.items() if k != "path"}, "lacks path", id="no path"),
        pytest.param(
            {**WHOLE, "base_part_size": ""}, "lacks base_part_size", id="an empty required field"
        ),
        pytest.param(
            {"stream_id": "s1", "path": "/rec/a.ts", "base_part_size": "8388608"},
            "does not parse",
            id="the required fields alone (no bucket, key, watch root)",
        ),
        pytest.param({**WHOLE, "base_part_size": "big"}, "does not parse", id="not a number"),
        pytest.param({**WHOLE, "state": "sleeping"}, "does not parse", id="an unknown state"),
        pytest.param({**WHOLE, "end_cause": "meteor"}, "does not parse", id="an unknown end cause"),
        pytest.param({**WHOLE, "inode": "1.5"}, "does not parse", id="a broken int"),
    ],
)
def test_a_partial_record_raises_partial_record(data: dict[str, str], what: str) -> None:
    with pytest.raises(PartialRecord) as info:
        StreamRecord.from_hash(data)
    assert what in str(info.value)
