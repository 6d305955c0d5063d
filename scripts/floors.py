"""Print the lowest versions pyproject.toml's runtime dependencies accept, as pins.

`make lock` compiles requirements/lowest.lock with these as constraints, so `make test-lowest`
runs the suite on the oldest releases a `pip install tailup` may pick; a floor that no longer
passes is raised in pyproject.toml, never left to a user to find.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def floors(dependencies: list[str]) -> list[str]:
    pins = []
    for requirement in dependencies:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+?)\s*>=\s*([^,;\s]+)\s*", requirement)
        if match is None:
            raise SystemExit(f"error: {requirement!r} has no plain '>=' floor to test")
        name = re.sub(r"\[.*\]", "", match.group(1))
        pins.append(f"{name}=={match.group(2)}")
    return pins


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sys.stdout.write("".join(f"{pin}\n" for pin in floors(project["dependencies"])))


if __name__ == "__main__":
    main()
