"""The architecture holds: layers, no import cycles, no private names used across packages.

The layers and the no-cycle rules are import-linter contracts in pyproject.toml
([tool.importlinter]); the test runs them in-process, so the test command is the CI check.
Import-linter sees which modules import which, not which names they take, so a scan of the
source checks the names: ``from extractguard.gateway.detection import _helper`` inside
``extractguard.cli`` couples the command line to a detail the gateway is free to change.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path


import extractguard

from checkout import ROOT
PACKAGE_DIR = Path(extractguard.__file__).resolve().parent


def test_the_checked_source_is_this_checkout() -> None:
    # import-linter analyses the importable ``extractguard``; it must be the one in this tree.
    assert PACKAGE_DIR == ROOT / "src" / "extractguard"


def test_import_contracts_are_kept() -> None:
    # In its own process: import-linter's command reconfigures logging, which silenced the
    # gateway's log records for every test that ran after it in the same session.
    code = ("import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command.main(sys.argv[1:], standalone_mode=False))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, "import-linter contract broken (pyproject.toml [tool.importlinter]):\n" + output
    assert "0 broken" in output, output


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    """The top-level package (or module) of ``extractguard`` that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def private_names_across_packages(package_dir: Path) -> list[str]:
    """``file:line`` of every private name or private module one package takes from another.

    Covers ``from extractguard.x import _name``, imports of ``extractguard.x._module`` and
    ``module._name`` where ``module`` was imported from another package.  Relative imports are
    resolved; names shared inside one package (``_pool`` in ``attacks``) are allowed.
    """
    root = package_dir.name
    files = sorted(package_dir.rglob("*.py"))
    modules = {_module_name(f, package_dir) for f in files}
    found: list[str] = []
    for path in files:
        me = _module_name(path, package_dir)
        mine = _package(me)
        is_package = path.name == "__init__.py"
        aliases: dict[str, str] = {}  # local name -> extractguard module it is bound to
        imported: list[tuple[int, str, list[str]]] = []  # (line, module, names taken from it)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = me.split(".") if is_package else me.split(".")[:-1]
                    base = anchor[: len(anchor) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != root:
                    continue
                imported.append((node.lineno, source, [a.name for a in node.names]))
                for a in node.names:
                    if f"{source}.{a.name}" in modules:
                        aliases[a.asname or a.name] = f"{source}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] != root:
                        continue
                    imported.append((node.lineno, a.name, []))
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else root
            elif isinstance(node, ast.Attribute) and _is_private(node.attr):
                dotted = _dotted(node.value)
                if dotted is None or dotted.split(".")[0] not in aliases:
                    continue
                head, _, rest = dotted.partition(".")
                target = aliases[head] + (f".{rest}" if rest else "")
                if target in modules and _package(target) != mine:
                    found.append(f"{path.relative_to(package_dir.parent)}:{node.lineno}: {target}.{node.attr}")
        for line, source, names in imported:
            if _package(source) == mine:
                continue
            private = [p for p in source.split(".") if _is_private(p)] + [n for n in names if _is_private(n)]
            if private:
                found.append(f"{path.relative_to(package_dir.parent)}:{line}: {source} -> {', '.join(private)}")
    return sorted(set(found))


def test_no_private_name_is_imported_across_packages() -> None:
    found = private_names_across_packages(PACKAGE_DIR)
    assert not found, "private names used outside their package (make them public or move the code):\n" + "\n".join(found)


def test_the_private_name_scan_finds_each_kind_of_crossing(tmp_path: Path) -> None:
    pkg = tmp_path / "extractguard"
    for d in ("a", "b"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "_util.py").write_text("def _helper():\n    pass\n")
    (pkg / "a" / "mod.py").write_text("_CONST = 1\n")
    (pkg / "a" / "same.py").write_text("from extractguard.a._util import _helper\nfrom ._util import _helper as h\n")
    (pkg / "b" / "uses.py").write_text(
        "from extractguard.a.mod import _CONST\n"
        "from ..a._util import helper\n"
        "import extractguard.a.mod as m\n"
        "from extractguard.a import mod\n"
        "import extractguard.a.mod\n"
        "x = m._CONST\n"
        "y = mod._CONST\n"
        "z = extractguard.a.mod._CONST\n"
        "w = mod.public + m.__name__\n"
    )
    assert private_names_across_packages(pkg) == [
        "extractguard/b/uses.py:1: extractguard.a.mod -> _CONST",
        "extractguard/b/uses.py:2: extractguard.a._util -> _util",
        "extractguard/b/uses.py:6: extractguard.a.mod._CONST",
        "extractguard/b/uses.py:7: extractguard.a.mod._CONST",
        "extractguard/b/uses.py:8: extractguard.a.mod._CONST",
    ]
