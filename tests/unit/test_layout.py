"""The shape of src/tailup (issue 17): no module over 450 lines, no class over 300, and the
decisions in tailup.rules kept pure (no I/O, clock, randomness or concurrency imported there)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tailup

PACKAGE = Path(tailup.__file__).parent
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 300
# What a pure module must not reach for: I/O, the clock, randomness, threads and processes, and
# the libraries that wrap them.
IMPURE = frozenset(
    {
        "asyncio",
        "os",
        "socket",
        "time",
        "uuid",
        "redis",
        "aiobotocore",
        "botocore",
        "watchdog",
        "av",
        "subprocess",
        "threading",
    }
)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def oversized_classes(source: str) -> list[tuple[str, int]]:
    """(qualified name, lines) of every class, nested ones too, over MAX_CLASS_LINES."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                assert child.end_lineno is not None
                # Decorators count: they are part of what a reader of the class reads.
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                size = child.end_lineno - first + 1
                if size > MAX_CLASS_LINES:
                    found.append((name, size))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def impure_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import, at any depth, of a module in IMPURE (``import os.path``,
    ``from os import path`` and ``import redis.asyncio as r`` all count)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue  # relative imports stay inside tailup
        found.extend((node.lineno, n) for n in names if n.partition(".")[0] in IMPURE)
    return found


def test_no_module_over_the_limit() -> None:
    sizes = {_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    over = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, "\n".join(
        f"{name}: {lines} lines (at most {MAX_MODULE_LINES})" for name, lines in over.items()
    )


def test_no_class_over_the_limit() -> None:
    over = [
        f"{_name(p)}: class {cls} is {lines} lines (at most {MAX_CLASS_LINES})"
        for p in _modules()
        for cls, lines in oversized_classes(p.read_text(encoding="utf-8"))
    ]
    assert not over, "\n".join(over)


def test_rules_stay_pure() -> None:
    rules = sorted((PACKAGE / "rules").rglob("*.py"))
    assert rules, "tailup.rules not found"
    found = [
        f"{_name(p)}:{line} imports {module}"
        for p in rules
        for line, module in impure_imports(p.read_text(encoding="utf-8"))
    ]
    assert not found, "\n".join(found)


# --- the checks themselves can fail ---------------------------------------------------------------


def _class_of(lines: int, *, nested: bool = False) -> str:
    body = "\n".join(f"    x{i} = {i}" for i in range(lines - 1))
    inner = f"class Inner:\n{body}"
    if nested:
        return "class Outer:\n" + "\n".join("    " + line for line in inner.splitlines())
    return inner


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (_class_of(MAX_CLASS_LINES), []),
        (_class_of(MAX_CLASS_LINES + 1), [("Inner", MAX_CLASS_LINES + 1)]),
        (
            _class_of(MAX_CLASS_LINES, nested=True),
            [("Outer", MAX_CLASS_LINES + 1)],
        ),
        (
            _class_of(MAX_CLASS_LINES + 1, nested=True),
            [("Outer", MAX_CLASS_LINES + 2), ("Outer.Inner", MAX_CLASS_LINES + 1)],
        ),
        (
            "def f():\n    " + _class_of(MAX_CLASS_LINES + 1).replace("\n", "\n    "),
            [("Inner", MAX_CLASS_LINES + 1)],
        ),
    ],
    ids=["at-limit", "over", "nested-at-limit", "nested-over", "in-function"],
)
def test_oversized_classes_are_named_with_their_size(
    source: str, expected: list[tuple[str, int]]
) -> None:
    assert oversized_classes(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\n", [(1, "os")]),
        ("import os.path\n", [(1, "os.path")]),
        ("from os import path\n", [(1, "os")]),
        ("import redis.asyncio as r\n", [(1, "redis.asyncio")]),
        ("from botocore.exceptions import ClientError\n", [(1, "botocore.exceptions")]),
        ("import json, time\n", [(1, "time")]),
        ("def f():\n    import uuid\n", [(2, "uuid")]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import av\n", [(3, "av")]),
        ("import timeit\nimport osmium\nfrom avro import x\n", []),
        ("from . import os\nfrom .time import x\n", []),
        ("from tailup.model import StreamRecord\nfrom datetime import datetime\n", []),
    ],
)
def test_impure_imports_are_found(source: str, expected: list[tuple[int, str]]) -> None:
    assert impure_imports(source) == expected
