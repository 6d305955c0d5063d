"""Checks across settings that only some commands need: what `tailup run` needs (folders that
exist and do not overlap, an after-upload folder outside them, a bucket), and what the commands
that reach S3 need (a bucket)."""

from __future__ import annotations

from pathlib import Path

from tailup.config.folders import folder_settings
from tailup.config.forms import ACCEPTED_FORMS, AFTER_UPLOAD_FORM
from tailup.config.settings import Settings
from tailup.config.values import AfterUploadKind
from tailup.errors import ConfigError
from tailup.keys import DEFAULT_KEY_TEMPLATE
from tailup.objectoptions import kms_key_problem
from tailup.rules.hls import HLS_KEY_TEMPLATE
from tailup.units import format_size


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop, an unreadable parent
        return path.absolute()


def _watch_problems(settings: Settings) -> list[str]:
    label, accepted = settings.label("watch"), f"Accepted: {ACCEPTED_FORMS['watch']}"
    problems = []
    if not settings.watch and not settings.shared_watch:
        shared = settings.label("shared_watch")
        problems.append(f"{label}: no folder given (nor {shared}). {accepted}")
    given = list(settings.watch) + [folder for _, folder in settings.shares]
    for folder in given:
        if not folder.exists():
            problems.append(f"{label}: {str(folder)!r} does not exist. {accepted}")
        elif not folder.is_dir():
            problems.append(f"{label}: {str(folder)!r} is not a folder. {accepted}")
    folders = [(folder, _resolved(folder)) for folder in given]
    for index, (one, one_real) in enumerate(folders):
        for other, other_real in folders[index + 1 :]:
            if one_real == other_real:
                why = f"are the same folder ({one_real})"
            elif one_real.is_relative_to(other_real) or other_real.is_relative_to(one_real):
                inner, outer = (one, other) if one_real.is_relative_to(other_real) else (other, one)
                why = f"overlap: {str(inner)!r} is inside {str(outer)!r}"
            else:
                continue
            problems.append(
                f"{label}: {str(one)!r} and {str(other)!r} {why}, so files would be watched and "
                f"uploaded twice. {accepted}"
            )
    return problems


def _after_upload_problems(settings: Settings) -> list[str]:
    """A move target inside a watched folder, for the global setting and each folder's own."""
    watched = [*settings.watch, *(folder for _, folder in settings.shares)]
    problems = []
    for folder in folder_settings(settings):
        kind, target = folder.after_upload_action
        if kind is not AfterUploadKind.MOVE or target is None:
            continue
        if "after_upload" in folder.own:
            label = f"after_upload of the [[watch]] table of {str(folder.folder)!r}"
        else:
            label = settings.label("after_upload")
        problem = _move_problem(target, watched, settings.label("watch"))
        line = f"{label}: got {folder.after_upload!r}: {problem}. Accepted: {AFTER_UPLOAD_FORM}"
        if problem and line not in problems:
            problems.append(line)
    return problems


def _move_problem(target: Path, watched: list[Path], watch_label: str) -> str:
    real = _resolved(target)
    for folder in watched:
        folder_real = _resolved(folder)
        if real == folder_real or real.is_relative_to(folder_real):
            where = "is" if real == folder_real else "is inside"
            return (
                f"{str(target)!r} {where} the watched folder {str(folder)!r}, watched by "
                f"{watch_label}, so every moved file would be found there and uploaded again"
            )
    return ""


def _budget_problems(settings: Settings) -> list[str]:
    """Every part is held in memory whole while it is sent: the first one must fit the budget."""
    if settings.part_size <= settings.max_inflight_bytes:
        return []
    budget, part = settings.label("max_inflight_bytes"), settings.label("part_size")
    return [
        f"{budget}: {format_size(settings.max_inflight_bytes)} is smaller than one part "
        f"({part} {format_size(settings.part_size)}): each part is held in memory whole while "
        f"it is sent. Accepted: at least the part size; or a smaller {part}"
    ]


def _kms_key_problems(settings: Settings) -> list[str]:
    problem = kms_key_problem(settings.sse, settings.sse_kms_key_id)
    if problem is None:
        return []
    accepted = ACCEPTED_FORMS["sse_kms_key_id"]
    return [f"{settings.label('sse_kms_key_id')}: {problem}. Accepted: {accepted}"]


def _hls_problems(settings: Settings) -> list[str]:
    """--hls with a --key-template (a [[watch]] table's with hls is refused at load:
    tailup.config.folders)."""
    if not settings.hls or settings.key_template in (DEFAULT_KEY_TEMPLATE, HLS_KEY_TEMPLATE):
        return []
    return [
        f"{settings.label('key_template')}: {settings.key_template!r} cannot be used with "
        f"{settings.label('hls')}, which keys every file by its path below the watched folder "
        f"({HLS_KEY_TEMPLATE}) so that a playlist's segments are beside it. Accepted: no key "
        "template (use --prefix for a folder in the bucket; or hls = true in the [[watch]] "
        "tables of the HLS folders alone)",
    ]


def check_daemon_settings(settings: Settings) -> None:
    """What `tailup run` needs beyond what every subcommand needs."""
    problems = _watch_problems(settings) + _after_upload_problems(settings)
    problems.extend(_hls_problems(settings))
    problems.extend(_kms_key_problems(settings))
    problems.extend(_budget_problems(settings))
    problems.extend(_bucket_problems(settings))
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))


def check_storage_settings(settings: Settings) -> None:
    problems = _bucket_problems(settings)
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))


def _bucket_problems(settings: Settings) -> list[str]:
    if not settings.bucket:
        return [f"{settings.label('bucket')}: no bucket given. Accepted: a bucket name"]
    return []
