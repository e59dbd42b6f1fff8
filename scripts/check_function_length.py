"""Functions longer than a limit (default 80 lines, decorators and docstring included),
outside tests: ``python scripts/check_function_length.py [--max-lines N] [PATH ...]``.

Prints ``path:line name length`` per offender, longest first; exit 1 if any, else 0.
tests/test_function_length.py runs it on the repository.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "service", "batch", "nareta", "data_pipeline", "benchmarks", "scripts")
MAX_LINES = 80


def long_functions(path: Path, max_lines: int = MAX_LINES) -> list[tuple[int, str, int]]:
    """(first line, qualified name, lines) of each function in ``path`` over ``max_lines``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                lines = child.end_lineno - first + 1
                if lines > max_lines:
                    found.append((first, prefix + child.name, lines))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def python_files(roots: list[Path]) -> list[Path]:
    files = []
    for root in roots:
        files += [root] if root.is_file() else sorted(root.rglob("*.py"))
    return [f for f in files if "tests" not in f.relative_to(REPO).parts[:1]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    roots = [p.resolve() for p in args.paths] or [REPO / name for name in PACKAGES]
    offenders = [(lines, f"{path.relative_to(REPO)}:{first}", name)
                 for path in python_files(roots)
                 for first, name, lines in long_functions(path, args.max_lines)]
    for lines, where, name in sorted(offenders, reverse=True):
        print(f"{where} {name} {lines} lines")
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main())
