"""Say what changed between two versions of a lock file: `lockdiff.py OLD NEW`.

Prints one line per package added, removed or moved to another version, or that nothing did.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", re.MULTILINE)


def pins(text: str) -> dict[str, str]:
    return {name.lower(): version for name, version in PIN.findall(text)}


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            lines.append(f"  + {name} {after}")
        elif after is None:
            lines.append(f"  - {name} {before}")
        else:
            lines.append(f"  ~ {name} {before} -> {after}")
    return lines


def main() -> None:
    old_path, new_path = (Path(arg) for arg in sys.argv[1:3])
    old = pins(old_path.read_text()) if old_path.exists() else {}
    lines = changes(old, pins(new_path.read_text()))
    print(f"{new_path}: " + ("unchanged" if not lines else f"{len(lines)} changed"))
    print("\n".join(lines)) if lines else None


if __name__ == "__main__":
    main()
