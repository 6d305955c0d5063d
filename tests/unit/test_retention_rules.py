"""Local retention's decisions (issue 20.1, tailup.rules.retention): which verified recordings go,
oldest first, why the others wait; and the --keep-local / --min-free settings."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tailup.cli import build_parser
from tailup.cli.parser import setting_overrides
from tailup.config import load_settings
from tailup.errors import ConfigError
from tailup.model import StreamRecord, StreamState
from tailup.rules.retention import (
    Candidate,
    Disk,
    MinFree,
    Policy,
    Wait,
    Why,
    object_matches,
    parse_min_free,
    plan,
    summary,
    sweeps_needed,
    upload_verified,
)
from tailup.rules.writers import Writer

DAY_S = 86400.0
NOW_S = 100 * DAY_S
GiB = 1024**3


def cand(name: str, age_days: float, size: int = GiB, **changes: Any) -> Candidate:
    base = Candidate(
        stream_id=name,
        path=f"/rec/{name}.mp4",
        device=1,
        completed_at_s=NOW_S - age_days * DAY_S,
        size_bytes=size,
        verified=True,
        writer=Writer.CLOSED,
    )
    return dataclasses.replace(base, **changes)


def names(pairs: Any) -> list[str]:
    return [c.stream_id for c, _ in pairs]


def test_age_deletes_only_what_is_older_oldest_first() -> None:
    decided = plan(
        [cand("b", 8), cand("new", 1), cand("a", 9)],
        now_s=NOW_S,
        policy=Policy(keep_local_s=7 * DAY_S),
        disks={1: Disk(free_bytes=100 * GiB, total_bytes=200 * GiB)},
    )
    assert names(decided.deletes) == ["a", "b"]
    assert {why for _, why in decided.deletes} == {Why.AGE}
    assert decided.waiting == ()


def test_space_deletes_the_oldest_until_enough_is_free() -> None:
    decided = plan(
        [cand("c", 1), cand("a", 3), cand("b", 2)],
        now_s=NOW_S,
        policy=Policy(min_free=MinFree(size_bytes=10 * GiB)),
        disks={1: Disk(free_bytes=int(8.5 * GiB), total_bytes=20 * GiB)},
    )
    assert names(decided.deletes) == ["a", "b"]  # 1.5 GiB short: two 1-GiB files
    assert {why for _, why in decided.deletes} == {Why.SPACE}
    assert decided.short_bytes == {}


def test_space_is_counted_per_file_system() -> None:
    decided = plan(
        [cand("full", 2, device=1), cand("roomy", 3, device=2)],
        now_s=NOW_S,
        policy=Policy(min_free=MinFree(percent=10)),
        disks={
            1: Disk(free_bytes=GiB, total_bytes=100 * GiB),
            2: Disk(free_bytes=50 * GiB, total_bytes=100 * GiB),
        },
    )
    assert names(decided.deletes) == ["full"]
    assert decided.short_bytes == {1: 8 * GiB}  # 10 GiB wanted, 1 + 1 freed


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"verified": False}, Wait.NOT_VERIFIED),
        ({"object_changed": True}, Wait.OBJECT_CHANGED),
        ({"writer": Writer.OPEN}, Wait.WRITER),
        ({"writer": Writer.UNKNOWN}, Wait.WRITER),  # a container, a share, --poll
        ({"holds_upload": False}, Wait.NOT_THE_UPLOAD),
        ({"inside": False}, Wait.OUTSIDE),
        ({"being_uploaded": True}, Wait.BEING_UPLOADED),
    ],
)
def test_a_due_recording_that_may_not_go_waits_and_the_next_oldest_goes(
    changes: dict[str, Any], reason: Wait
) -> None:
    decided = plan(
        [cand("held", 5, **changes), cand("next", 4), cand("young", 1)],
        now_s=NOW_S,
        policy=Policy(min_free=MinFree(size_bytes=5 * GiB)),
        disks={1: Disk(free_bytes=4 * GiB, total_bytes=10 * GiB)},
    )
    assert names(decided.deletes) == ["next"]
    assert [(c.stream_id, why) for c, why in decided.waiting] == [("held", reason)]


@pytest.mark.parametrize(
    ("folder_keep_days", "global_keep_days", "age_days", "deleted"),
    [
        (None, 7, 8, True),  # its folder sets none: --keep-local
        (None, 7, 6, False),
        (1, 7, 2, True),  # a guest folder's shorter one
        (1, 7, 0.5, False),
        (30, 7, 8, False),  # a longer one wins over --keep-local too
        (0, 7, 8, False),  # 0 in its table: off for that folder
        (2, 0, 3, True),  # the folder's alone, --keep-local off
        (2, 0, 1, False),
    ],
)
def test_each_recording_is_due_by_its_own_folders_keep_local(
    folder_keep_days: float | None, global_keep_days: float, age_days: float, deleted: bool
) -> None:
    keep_s = None if folder_keep_days is None else folder_keep_days * DAY_S
    decided = plan(
        [cand("a", age_days, keep_local_s=keep_s)],
        now_s=NOW_S,
        policy=Policy(keep_local_s=global_keep_days * DAY_S),
        disks={1: Disk(free_bytes=100 * GiB, total_bytes=200 * GiB)},
    )
    assert names(decided.deletes) == (["a"] if deleted else [])
    assert {why for _, why in decided.deletes} <= {Why.AGE}


def test_two_folders_of_one_age_and_two_keep_locals() -> None:
    guest = [cand(f"guest{n}", 3, keep_local_s=2 * DAY_S) for n in range(2)]
    cams = [cand("cam", 3, keep_local_s=7 * DAY_S), cand("cam-old", 9, keep_local_s=7 * DAY_S)]
    decided = plan(
        [*cams, *guest],
        now_s=NOW_S,
        policy=Policy(keep_local_s=30 * DAY_S),
        disks={1: Disk(free_bytes=100 * GiB, total_bytes=200 * GiB)},
    )
    assert names(decided.deletes) == ["cam-old", "guest0", "guest1"]


@pytest.mark.parametrize(
    ("policy", "folders_keep_local_s", "needed"),
    [
        (Policy(), [], False),
        (Policy(), [0.0, 0.0], False),
        (Policy(), [0.0, 3600.0], True),  # one folder's table alone turns the sweep on
        (Policy(keep_local_s=3600.0), [3600.0], True),
        (Policy(keep_local_s=3600.0), [0.0], False),  # every folder turned it off
        (Policy(min_free=MinFree(percent=10)), [0.0], True),  # --min-free is every folder's
    ],
)
def test_the_sweep_runs_when_any_folder_needs_it(
    policy: Policy, folders_keep_local_s: list[float], needed: bool
) -> None:
    assert sweeps_needed(policy, folders_keep_local_s) is needed


def test_nothing_is_due_when_young_and_space_is_free() -> None:
    decided = plan(
        [cand("a", 1, verified=False)],
        now_s=NOW_S,
        policy=Policy(keep_local_s=7 * DAY_S, min_free=MinFree(percent=5)),
        disks={1: Disk(free_bytes=5 * GiB, total_bytes=10 * GiB)},
    )
    assert decided.deletes == () and decided.waiting == ()  # not due: not "waiting" either


def test_off_deletes_nothing() -> None:
    assert Policy().off
    decided = plan([cand("a", 999)], now_s=NOW_S, policy=Policy(), disks={1: Disk(0, GiB)})
    assert decided.deletes == ()


@pytest.mark.parametrize(
    ("head", "matches"),
    [
        ((GiB, '"abc-3"'), True),
        ((GiB, "abc-3"), True),
        ((GiB, '"abd-3"'), False),  # rewritten in S3
        ((GiB - 1, '"abc-3"'), False),
        ((None, ""), False),  # gone from S3
    ],
)
def test_the_object_must_be_the_recorded_one(head: tuple[int | None, str], matches: bool) -> None:
    size, etag = head
    assert (
        object_matches(record_size=GiB, record_etag='"abc-3"', object_size=size, object_etag=etag)
        is matches
    )
    assert not object_matches(record_size=GiB, record_etag="", object_size=GiB, object_etag="")


def test_the_summary_says_what_was_freed_and_what_waits() -> None:
    line = summary([cand("a", 9, size=1000)], [(cand("b", 8), Wait.WRITER)])
    waits = f"1 due but waiting ({Wait.WRITER.value}: 1)"
    assert line == "retention: 1 deleted (1000 bytes freed); " + waits


@pytest.mark.parametrize(
    ("text", "parsed", "bytes_of_1000"),
    [
        ("10GiB", MinFree(size_bytes=10 * GiB), 10 * GiB),
        ("500", MinFree(size_bytes=500), 500),
        ("15%", MinFree(percent=15.0), 150),
        (" 2.5 % ", MinFree(percent=2.5), 25),
        ("off", MinFree(), 0),
        ("0", MinFree(), 0),
    ],
)
def test_min_free_forms(text: str, parsed: MinFree, bytes_of_1000: int) -> None:
    assert parse_min_free(text) == parsed
    assert parsed.bytes_of(1000) == bytes_of_1000


@pytest.mark.parametrize(
    ("overrides", "flag", "said"),
    [
        ({"min_free": "lots"}, "--min-free", "'lots' is not a size like"),
        ({"min_free": "150%"}, "--min-free", "a percentage is above 0, below 100"),
        ({"min_free": "-5%"}, "--min-free", "like 15%"),
        ({"keep_local": "a week"}, "--keep-local", "is not a number of seconds"),
        ({"keep_local": "-3"}, "--keep-local", ""),
    ],
)
def test_bad_values_are_refused_naming_the_flag_and_the_forms(
    overrides: dict[str, Any], flag: str, said: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides)
    text = str(caught.value)
    assert f"{flag} (TAILUP_" in text and said in text and "Accepted: " in text, text


def test_flags_reach_the_policy() -> None:
    args = build_parser().parse_args(["run", "--keep-local", "7d", "--min-free", "15%"])
    settings = load_settings(setting_overrides(args))
    assert settings.retention_policy == Policy(keep_local_s=7 * DAY_S, min_free=MinFree(percent=15))
    assert load_settings({}).retention_policy.off


@pytest.mark.parametrize(
    ("changes", "verified"),
    [
        ({}, True),
        ({"state": StreamState.FAILED}, False),
        ({"state": StreamState.SALVAGED}, False),  # a prefix of the recording
        ({"state": StreamState.ABORTED}, False),
        ({"etag": ""}, False),
        ({"final_size": 0}, False),
        ({"sha256_pending": True}, False),  # its SHA-256 is still to be read from the file
    ],
)
def test_only_a_completed_checked_record_counts_as_verified(
    changes: dict[str, Any], verified: bool
) -> None:
    record = StreamRecord(
        stream_id="s1",
        path="/rec/a.mp4",
        watch_root="/rec",
        bucket="b",
        key="k",
        base_part_size=8 << 20,
        state=StreamState.COMPLETED,
        etag='"abc-2"',
        final_size=GiB,
    )
    assert upload_verified(dataclasses.replace(record, **changes)) is verified
