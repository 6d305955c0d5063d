"""A paced recorder for the benchmarks: appends to one or many files at a fixed rate each, then
closes them, like a live recorder (one process drives every file, as the brief asks).

    python bench/writer.py --rate 1MiB --bytes 40MiB --chunk 32KiB DIR/cam000.ts DIR/cam001.ts ...

Each file gets its own pseudo-random bytes (incompressible, different per file). The schedule is
absolute (chunk k of every file is due at start + k * chunk / rate), so a slow moment is caught up
rather than stretching the recording. With ``--patch-at-close OFFSET`` (hex or decimal, e.g.
0x28) it overwrites the 4 bytes at OFFSET of every file with other bytes (each one inverted) just
before closing it, as an MP4 muxer patches its ``mdat`` size at the end. On exit it prints one JSON
line per file: ``{"path": ..., "size": ..., "closed_at": <epoch seconds right after close()>}``.

Standalone on purpose: no tailup import, so its start-up and CPU never mix with the daemon's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2}
POOL_BYTES = 32 * 1024**2  # random bytes the files are cut from
PATCH_BYTES = 4  # what --patch-at-close rewrites (an MP4's mdat size at 0x28)


def parse_size(text: str) -> int:
    number = text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return int(float(number) * _UNITS[text[len(number) :].lower()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", required=True, help="bytes per second per file, e.g. 1MiB")
    parser.add_argument("--bytes", required=True, help="final size of every file, e.g. 40MiB")
    parser.add_argument("--chunk", default="32KiB", help="bytes per write (ffmpeg's is 32KiB)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--patch-at-close", type=lambda text: int(text, 0), default=None, metavar="OFFSET",
        help="overwrite 4 bytes at OFFSET (e.g. 0x28) with changed ones just before close",
    )  # fmt: skip
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    rate, total, chunk = parse_size(args.rate), parse_size(args.bytes), parse_size(args.chunk)
    patch_at = args.patch_at_close
    if patch_at is not None and not 0 <= patch_at <= total - PATCH_BYTES:
        parser.error(f"--patch-at-close {patch_at:#x} is outside a file of {total} bytes")

    pool = random.Random(args.seed).randbytes(POOL_BYTES)
    pool += pool[:chunk]  # so any offset can take a whole chunk without wrapping
    files = [path.open("wb") for path in args.paths]
    offsets = [(i * 7_919 * 4096) % POOL_BYTES for i in range(len(files))]
    written = 0
    started = time.monotonic()
    while written < total:
        due = started + written / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        size = min(chunk, total - written)
        for i, out in enumerate(files):
            start = (offsets[i] + written) % POOL_BYTES
            # Unbuffered write: the file grows now, as a recorder's does.
            os.write(out.fileno(), pool[start : start + size])
        written += size
    results = []
    for i, (path, out) in enumerate(zip(args.paths, files, strict=True)):
        if patch_at is not None:
            # The bytes written there came from the pool: invert each, so every one changes.
            start = offsets[i] + patch_at
            old = bytes(pool[(start + k) % POOL_BYTES] for k in range(PATCH_BYTES))
            os.pwrite(out.fileno(), bytes(b ^ 0xFF for b in old), patch_at)
        out.close()
        results.append({"path": str(path), "size": written, "closed_at": time.time()})
    for result in results:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
