"""What `make mutants` prints after mutmut ran: every mutant that was not killed, and the kill
rate of each module named in pyproject.toml's [tool.mutmut] only_mutate (docs/testing.md).

mutmut keeps its results per source file in mutants/<path>.meta (JSON: exit code by mutant);
its own summary is one line for all modules together. Exit status 1 when the rate over all of
them is below --fail-under.

    python scripts/mutants_report.py [--fail-under 90]
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# mutmut's statuses that count as killed in its own score: a test failed, the tests ran out of
# time (a mutant that loops), or the type checker refused the mutant.
KILLED = frozenset({"killed", "timeout", "caught by type check"})
# Not run on purpose: left out of the rate.
NOT_COUNTED = frozenset({"skipped"})


@dataclass(frozen=True, slots=True)
class ModuleRate:
    module: str
    killed: int
    counted: int  # every mutant but the skipped ones
    not_killed: tuple[tuple[str, str], ...]  # (mutant, status), sorted

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.counted if self.counted else 100.0


def module_of(path: str) -> str:
    """``src/tailup/rules/admission.py`` -> ``tailup.rules.admission``."""
    parts = list(Path(path).with_suffix("").parts)
    if parts and parts[0] == "src":
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _mutant_order(name: str) -> tuple[str, int]:
    """``tailup.plan.x_f__mutmut_10`` after ``..._9``: by function, then by number."""
    stem, _, number = name.rpartition("__mutmut_")
    return (stem, int(number)) if number.isdigit() else (name, 0)


def rate(module: str, status_by_mutant: Mapping[str, str]) -> ModuleRate:
    counted = {m: s for m, s in status_by_mutant.items() if s not in NOT_COUNTED}
    killed = sum(1 for s in counted.values() if s in KILLED)
    not_killed = tuple(
        sorted(
            ((m, s) for m, s in counted.items() if s not in KILLED),
            key=lambda ms: _mutant_order(ms[0]),
        )
    )
    return ModuleRate(module, killed, len(counted), not_killed)


def total(rates: Sequence[ModuleRate]) -> ModuleRate:
    return ModuleRate(
        "all",
        sum(r.killed for r in rates),
        sum(r.counted for r in rates),
        tuple(ms for r in rates for ms in r.not_killed),
    )


def report(rates: Sequence[ModuleRate]) -> str:
    lines: list[str] = []
    for r in rates:
        for mutant, status in r.not_killed:
            lines.append(f"{status:>12}  {mutant}")
    if lines:
        lines.insert(0, "Not killed (`mutmut show NAME` prints the change):")
        lines.append("")
    width = max([len(r.module) for r in rates] + [len("all")])
    lines.append(f"{'module':<{width}}  {'killed':>6}  {'of':>5}  {'rate':>6}")
    for r in [*rates, total(rates)]:
        lines.append(f"{r.module:<{width}}  {r.killed:>6}  {r.counted:>5}  {r.percent:>5.1f}%")
    return "\n".join(lines)


def load_rates(root: Path, status_of: Callable[[int | None], str]) -> list[ModuleRate]:
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    rates = []
    for path in config["only_mutate"]:
        meta = root / "mutants" / f"{path}.meta"
        if not meta.exists():
            raise SystemExit(f"{meta} is missing: run `make mutants` (mutmut run) first")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        rates.append(rate(module_of(path), {m: status_of(c) for m, c in codes.items()}))
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fail-under", type=float, default=0.0, metavar="PERCENT")
    args = parser.parse_args(argv)
    from mutmut.stats import status_by_exit_code  # the venv's mutmut: its own exit-code table

    rates = load_rates(Path.cwd(), lambda code: status_by_exit_code[code])
    print(report(rates))
    overall = total(rates).percent
    if overall < args.fail_under:
        print(f"{overall:.1f}% killed, below {args.fail_under:g}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
