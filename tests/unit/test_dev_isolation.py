"""The daemon never loads tailup.dev (test doubles and dev servers): what `tailup run` imports is
what it runs. Only tailup.cli.demo may use it, from inside the functions that start the demo."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tailup

PACKAGE = Path(tailup.__file__).parent
DEV = "tailup.dev"


def _runtime_modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] != "dev"
        and path.relative_to(PACKAGE).as_posix() != "cli/demo.py"
    )


def _module_name(path: Path) -> str:
    parts = ("tailup", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_name(path: Path) -> str:
    """The package a module's relative imports start from."""
    return ".".join(("tailup", *path.parent.relative_to(PACKAGE).parts))


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Absolute names an import statement in ``package`` loads (``from tailup import dev``
    counts as ``tailup.dev``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        anchor = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _loads_dev(name: str) -> bool:
    return name == DEV or name.startswith(DEV + ".")


def _dev_imports(source: str, package: str, *, lazy_ok: bool) -> list[int]:
    """Lines that import tailup.dev; with ``lazy_ok``, imports inside a function body or under
    ``if TYPE_CHECKING:`` are allowed (they do not run when the module loads)."""
    found = []

    def visit(node: ast.AST, deferred: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if not (lazy_ok and deferred) and any(
                _loads_dev(name) for name in _imported(node, package)
            ):
                found.append(node.lineno)
            return
        inner = deferred or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, deferred)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


@pytest.mark.parametrize(
    ("source", "package", "lazy_ok", "lines"),
    [
        ("import tailup.dev\n", "tailup", False, [1]),
        ("from tailup.dev.redis import RedisServer\n", "tailup", False, [1]),
        ("from tailup import dev\n", "tailup", False, [1]),
        ("from . import dev\n", "tailup", False, [1]),
        ("from .dev import free_port\n", "tailup", False, [1]),
        ("from ..dev import free_port\n", "tailup.stream", False, [1]),
        ("def f():\n    from tailup.dev import SeaweedS3\n", "tailup", False, [2]),
        ("def f():\n    from tailup.dev import SeaweedS3\n", "tailup", True, []),
        ("if TYPE_CHECKING:\n    from tailup.dev import SeaweedS3\n", "tailup", True, []),
        ("from tailup.dev import SeaweedS3\n", "tailup", True, [1]),
        ("import tailup.devices\nfrom tailup import devx\n", "tailup", False, []),
        ("from tailup.checkpoint import CheckpointStore\n", "tailup", False, []),
    ],
)
def test_the_import_finder(source: str, package: str, lazy_ok: bool, lines: list[int]) -> None:
    assert _dev_imports(source, package, lazy_ok=lazy_ok) == lines


def test_no_runtime_module_imports_tailup_dev() -> None:
    """Not even inside a function: a lazy import would load test code into the daemon all the
    same when that function runs."""
    modules = _runtime_modules()
    assert len(modules) > 30, "the walk found the package"
    offenders = {
        str(path.relative_to(PACKAGE)): lines
        for path in modules
        if (lines := _dev_imports(path.read_text(), _package_name(path), lazy_ok=False))
    }
    assert offenders == {}, "runtime modules import tailup.dev (test code) at these lines"


def test_demo_imports_tailup_dev_only_when_it_runs() -> None:
    demo = PACKAGE / "cli" / "demo.py"
    assert _dev_imports(demo.read_text(), "tailup.cli", lazy_ok=True) == []


def test_the_daemon_loads_no_dev_module() -> None:
    """Every runtime module imported in a fresh interpreter (the CLI and the supervisor first):
    none of them pulls tailup.dev in, directly or through another."""
    every = [_module_name(path) for path in _runtime_modules() if path.name != "__main__.py"]
    names = ["tailup.cli", "tailup.supervisor", *every]
    script = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m == {DEV!r} "
        f"or m.startswith({DEV + '.'!r}))))\n"
    )
    # The interpreter imports this tailup (the tests' own), whatever PYTHONPATH says.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
