"""Layering: every import between parts of ``interir`` is one that docs/DEVELOPING.md allows.

The rule lives in one place, the "Who may import whom" table of docs/DEVELOPING.md; this test
parses that table and every module's imports (with ``ast``, nothing is imported), so the doc and
the code cannot drift apart. The synthetic cases at the end show the check catches a forbidden
import, an undocumented module, and lets a ``TYPE_CHECKING``-only import through.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "interir"
DOC = ROOT / "docs" / "DEVELOPING.md"
ROW = re.compile(r"^\| `([\w.]+)` \|(.*)\|\s*$")


def read_table(text: str) -> dict[str, set[str]]:
    """The doc's table as ``{part: parts it may import}`` (``{"*"}``: anything)."""
    section = text.split("### Who may import whom", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            table[match.group(1)] = set(re.findall(r"`([\w.*]+)`", match.group(2)))
    return table


def module_names(package: Path) -> dict[str, Path]:
    """``{"interir.engine.train": path}`` for every ``.py`` file under ``package``."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = (package.name,) + path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:`` (never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _type_checking_only(node):
            yield from _import_nodes(ast.Module(body=node.orelse, type_ignores=[]))
        else:
            yield from _import_nodes(node)


def imported_modules(name: str, path: Path, known: set[str], top: str) -> set[str]:
    """The ``top`` package's modules that module ``name`` (at ``path``) imports.

    ``from a.b import c`` counts as ``a.b.c`` when that is a module, else as ``a.b``.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)]
            stem = ".".join(base + [node.module]) if node.level and node.module else (
                ".".join(base) if node.level else node.module or "")
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem
                       for a in node.names]
        found.update(t for t in targets if t == top or t.startswith(top + "."))
    return found


def part_of(module: str, parts: set[str], top: str) -> str | None:
    """The longest table part prefixing ``module``; ``top`` is the package's ``__init__`` only,
    so a new module without a row of its own has no part."""
    if module == top:
        return top if top in parts else None
    rest = module[len(top) + 1:].split(".")
    for n in range(len(rest), 0, -1):
        if ".".join(rest[:n]) in parts:
            return ".".join(rest[:n])
    return None


def violations(package: Path, table: dict[str, set[str]]) -> list[str]:
    """Every module without a part, and every import its part may not make."""
    top = package.name
    names = module_names(package)
    problems = []
    for name, path in names.items():
        part = part_of(name, set(table), top)
        if part is None:
            problems.append(f"{name}: no row in the table")
            continue
        for target in sorted(imported_modules(name, path, set(names), top)):
            to = part_of(target, set(table), top)
            if to != part and "*" not in table[part] and to not in table[part]:
                problems.append(f"{name} imports {target} (part {to!r}), not allowed for {part!r}")
    return problems


def test_every_import_is_allowed_by_the_documented_table():
    table = read_table(DOC.read_text())
    assert len(table) >= 20 and table["cli"] == {"*"} and table["models"] == {"registry"}
    assert violations(PACKAGE, table) == []


def test_the_documented_table_has_no_cycle():
    """The table is a layering: following "may import" never comes back to where it started."""
    table = read_table(DOC.read_text())
    done: set[str] = set()

    def visit(part: str, path: tuple[str, ...]) -> None:
        assert part not in path, f"cycle in the table: {' -> '.join(path + (part,))}"
        if part in done or "*" in table.get(part, ()):
            return
        for other in table.get(part, ()):
            visit(other, path + (part,))
        done.add(part)

    for part in table:
        visit(part, ())
    assert all(other in table for allowed in table.values() for other in allowed - {"*"})


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "pkg"


SYNTHETIC_DOC = """### Who may import whom

| Part | May import |
|---|---|
| `pkg` | `low` |
| `low` | |
| `high` | `low` |
| `high.special` | |
"""


def test_a_forbidden_import_fails(tmp_path):
    table = read_table(SYNTHETIC_DOC)
    assert table == {"pkg": {"low"}, "low": set(), "high": {"low"}, "high.special": set()}
    package = _write(tmp_path, {
        "pkg/__init__.py": "from pkg import low\n",
        "pkg/low/__init__.py": "import os\n",
        "pkg/low/a.py": "from . import b\nfrom pkg.low.b import x\n",   # its own part: fine
        "pkg/low/b.py": "def f():\n    from pkg.high import y\n",       # upward, in a function
        "pkg/high/__init__.py": "from ..low import a\n",                 # allowed, relative
        "pkg/high/special.py": "from pkg.low import a\n",                # its own row forbids it
        "pkg/high/typed.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from pkg.pkgonly import Z\n"),      # never runs: not counted
    })
    assert violations(package, table) == [
        "pkg.high.special imports pkg.low.a (part 'low'), not allowed for 'high.special'",
        "pkg.low.b imports pkg.high (part 'high'), not allowed for 'low'",
    ]


def test_a_module_without_a_row_fails(tmp_path):
    package = _write(tmp_path, {"pkg/__init__.py": "", "pkg/low/__init__.py": "",
                                "pkg/newthing.py": "from pkg import low\n"})
    assert violations(package, read_table(SYNTHETIC_DOC)) == ["pkg.newthing: no row in the table"]
