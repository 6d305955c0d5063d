"""The commands besides the daemon: `status`, `verify`, `abort`, `retry`, `gc`, `salvage`, `url`
and `demo`. Each
imports what it needs when it runs, so that every command starts without loading the others'
libraries (rich, aiobotocore)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from tailup.cli.exits import EXIT_FAILURE, EXIT_OK
from tailup.config import NODE_ID_FORM, Settings, check_storage_settings, is_node_id
from tailup.errors import ConfigError
from tailup.selection import DEFAULT_LIMIT, Selection, parse_limit, parse_states

# -- status --


def _status_selection(args: argparse.Namespace) -> Selection:
    try:
        states = parse_states(args.state or [])
    except ValueError as exc:
        raise ConfigError(f"--state: {exc}") from None
    try:
        limit = DEFAULT_LIMIT if args.limit is None else parse_limit(args.limit)
    except ValueError as exc:
        raise ConfigError(f"--limit: {exc}") from None
    if args.node is not None and not is_node_id(args.node):
        raise ConfigError(f"--node: {args.node!r} is not a node id. Accepted: {NODE_ID_FORM}")
    if args.every and args.refresh:
        raise ConfigError("--all reads every record once; it cannot be used with --watch")
    return Selection(limit=limit, states=states, every=args.every)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from tailup.status import collect_status
    from tailup.statusview import choose_output, print_every_record, print_view, watch_status

    selection = _status_selection(args)
    output = choose_output(args.output, terminal=sys.stdout.isatty())
    if args.refresh:
        if args.interval <= 0:
            raise ConfigError(f"--interval: {args.interval:g} is not above 0")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to leave --watch
            asyncio.run(
                watch_status(
                    settings,
                    selection,
                    node=args.node,
                    interval_s=args.interval,
                    output=output,
                )
            )
        return EXIT_OK
    if selection.every:
        asyncio.run(print_every_record(settings, selection, node=args.node, output=output))
        return EXIT_OK
    print_view(asyncio.run(collect_status(settings, selection, node=args.node)), output)
    return EXIT_OK


# -- verify --


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from tailup.verify import print_report, verify_target

    report = asyncio.run(verify_target(settings, args.target))
    print_report(report)
    return EXIT_OK if report.ok else EXIT_FAILURE


# -- abort --


def cmd_abort(args: argparse.Namespace, settings: Settings) -> int:
    check_storage_settings(settings)
    from tailup.status import abort_stream

    message = asyncio.run(abort_stream(settings, args.stream_id, args.reason))
    print(message)
    return EXIT_OK


# -- retry --


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    from tailup.status import retry_streams

    for line in asyncio.run(retry_streams(settings, args.stream_id, failed=args.failed)):
        print(line)
    return EXIT_OK


# -- gc --


def cmd_gc(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from tailup.hygiene import collect_garbage, describe_age, gc_prefixes
    from tailup.units import DURATION_FORM, parse_duration

    check_storage_settings(settings)
    try:
        older_than_s = parse_duration(args.older_than)
    except ValueError:
        raise ConfigError(
            f"--older-than: got {args.older_than!r}. Accepted: {DURATION_FORM}"
        ) from None
    garbage = asyncio.run(
        collect_garbage(
            settings, older_than_s=older_than_s, dry_run=args.dry_run, now=datetime.now(UTC)
        )
    )
    verb = "would abort" if args.dry_run else "aborted"
    for item in garbage:
        print(
            f"{verb} s3://{settings.bucket}/{item.key} upload {item.upload_id} "
            f"(initiated {item.initiated.isoformat()}, {describe_age(item.age_s)} ago)"
        )
    prefixes = [p for p in gc_prefixes(settings) if p]
    where = "under " + ", ".join(map(repr, prefixes)) if prefixes else "in the bucket"
    done = "to abort (dry run: none aborted)" if args.dry_run else "aborted"
    print(f"{len(garbage)} upload(s) {done} {where}")
    return EXIT_OK


# -- salvage --


def _salvage_request(args: argparse.Namespace, settings: Settings) -> Any:
    from tailup.cli.salvageargs import DEFAULT_SALVAGE_AGE
    from tailup.salvagefind import Request
    from tailup.units import DURATION_FORM, parse_duration

    if args.node is not None and not is_node_id(args.node):
        raise ConfigError(f"--node: {args.node!r} is not a node id. Accepted: {NODE_ID_FORM}")
    if args.from_s3 and (args.streams or args.node is not None):
        raise ConfigError("--from-s3 finds the uploads in S3: it takes no STREAM and no --node")
    if not (args.from_s3 or args.streams or args.node is not None):
        raise ConfigError("salvage what? Give --node NODE, STREAM..., or --from-s3")
    if args.older_than is not None and not args.from_s3:
        raise ConfigError("--older-than goes with --from-s3 (Redis's node leases say the rest)")
    given = args.older_than if args.older_than is not None else DEFAULT_SALVAGE_AGE
    try:
        older_than_s = parse_duration(given)
    except ValueError:
        raise ConfigError(f"--older-than: got {given!r}. Accepted: {DURATION_FORM}") from None
    return Request(
        node=args.node,
        streams=tuple(args.streams),
        from_s3=args.from_s3,
        # the global prefix and each [[watch]] table's, as gc lists them
        prefixes=tuple(_listed_prefixes(settings)),
        older_than_s=older_than_s,
        dry_run=args.dry_run,
    )


def _listed_prefixes(settings: Settings) -> list[str]:
    from tailup.hygiene import gc_prefixes

    return gc_prefixes(settings)


def cmd_salvage(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from tailup.salvagefind import format_rows, salvage

    request = _salvage_request(args, settings)
    check_storage_settings(settings)
    rows = asyncio.run(salvage(settings, request, datetime.now(UTC)))
    for line in format_rows(rows):
        print(line)
    counts = {o: sum(r.outcome == o for r in rows) for o in dict.fromkeys(r.outcome for r in rows)}
    said = ", ".join(f"{n} {o}" for o, n in counts.items()) or "nothing to salvage"
    print(said + (" (dry run: nothing changed)" if request.dry_run else ""))
    return EXIT_FAILURE if counts.get("failed") else EXIT_OK


# -- url --


def cmd_url(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from tailup.playback import parse_expires, presign_target
    from tailup.units import format_size

    expires_s = parse_expires(args.expires)
    playback = asyncio.run(
        presign_target(
            settings,
            args.target,
            expires_s=expires_s,
            metadata=args.metadata,
            now=datetime.now(UTC),
        )
    )
    for note in playback.notes:
        print(f"tailup: note: {note}", file=sys.stderr)
    # The URLs alone on stdout, for `curl "$(tailup url ...)"`; what they are on stderr.
    print(playback.url)
    if playback.metadata_url is not None:
        print(playback.metadata_url)
    until = playback.expires_at.isoformat(timespec="seconds")
    print(
        f"s3://{playback.bucket}/{playback.key} ({format_size(playback.size_bytes)}), "
        f"URL valid until {until}",
        file=sys.stderr,
    )
    return EXIT_OK


# -- demo --


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    # The settings were checked (a bad config file stops the demo as it stops every command);
    # the demo's daemon does not use them: it has its own servers, folder and settings.
    del settings
    from tailup.cli.demo import run_demo

    return run_demo(seconds=args.seconds, workdir=args.workdir)
