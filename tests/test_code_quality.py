"""The house rules that tools check: ruff (lint and format), mypy strict on src/ and on the test factories,
the import contracts, and tests that share code only through tests/factories and tests/support."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import REPO_ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def test_ruff_lint_is_clean() -> None:
    result = _run("ruff", "check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run("ruff", "format", "--check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_on_the_test_factories() -> None:
    """The shared test builders are typed like src/ (the project's mypy settings, on these folders)."""
    result = _run("mypy", "tests/factories", "tests/support")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept() -> None:
    """The package graph has no cycles and keeps its layers (``[tool.importlinter]`` in pyproject.toml)."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The only packages of tests/ a test module, a conftest or a factory may import from.
SHARED_TEST_PACKAGES = ("tests.factories", "tests.support")


def _test_imports(path: Path) -> Iterator[str]:
    """Every module of the ``tests`` package that ``path`` imports (relative imports resolved), at any depth."""
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # ``from tests import conftest`` names modules; ``from tests.x import y`` names y in tests.x
            modules = [f"{base}.{alias.name}" for alias in node.names] if base == "tests" else [base]
        else:
            continue
        yield from (module for module in modules if module == "tests" or module.startswith("tests."))


def _is_shared(module: str) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in SHARED_TEST_PACKAGES)


def test_tests_share_code_only_through_factories_and_support() -> None:
    """No test module, conftest or factory imports another test module or a conftest: builders live in
    tests/factories, plumbing in tests/support, fixtures in the conftests (STYLE.md item 17)."""
    offenders = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in sorted((REPO_ROOT / "tests").rglob("*.py"))
        for module in _test_imports(path)
        if not _is_shared(module)
    ]
    assert offenders == [], "\n".join(offenders)
