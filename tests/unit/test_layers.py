"""The architecture's rules, checked on every product module (README, "Layout").

- Only `dashboard/ui` imports Textual.
- `publisher` and `listeners` import nothing of `dashboard`; `dashboard/lab` imports neither
  `dashboard/ui` nor `dashboard/commands`.
- The headless commands (`check`, `scenario`, `chaos`) run without loading Textual at all.
- No module is over 500 lines, no class over 250.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("publisher", "listeners", "dashboard")
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 250


def product_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the product."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported(path: Path) -> set[str]:
    """Every module an import statement in the file names, at any depth (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def broken_rules(name: str, imports: set[str]) -> list[str]:
    """What module `name`, importing `imports`, does against the layering rules."""
    rules = [("textual", lambda: not within(name, "dashboard.ui"))]
    if within(name, "publisher") or within(name, "listeners"):
        rules.append(("dashboard", lambda: True))
    if within(name, "dashboard.lab"):
        rules += [("dashboard.ui", lambda: True), ("dashboard.commands", lambda: True)]
    return sorted(f"{name} imports {target}" for target, applies in rules if applies() for i in imports if within(i, target))


def test_the_rules_catch_what_they_forbid() -> None:
    assert broken_rules("dashboard.lab.lab", {"textual.app", "dashboard.ui.view"}) == [
        "dashboard.lab.lab imports dashboard.ui",
        "dashboard.lab.lab imports textual",
    ]
    assert broken_rules("listeners.guard", {"dashboard.lab.waits"}) == ["listeners.guard imports dashboard"]
    assert broken_rules("dashboard.commands.check", {"textual"}) == ["dashboard.commands.check imports textual"]
    assert broken_rules("dashboard.ui.app", {"textual.app", "dashboard.lab.lab"}) == []


def test_every_module_keeps_to_its_layer() -> None:
    modules = product_modules()
    assert {"dashboard.ui.app", "dashboard.lab.lab", "dashboard.commands.main", "listeners.status"} <= set(modules)
    broken = [rule for name, path in modules.items() for rule in broken_rules(name, imported(path))]
    assert broken == []


@pytest.mark.parametrize("name", ["dashboard.lab", "publisher", "listeners"])
def test_non_ui_packages_load_without_textual(name: str) -> None:
    """Importing every module of the package, in a fresh interpreter, loads no Textual module."""
    modules = [module for module in product_modules() if within(module, name)]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'textual')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_headless_commands_run_without_textual(tmp_path: Path) -> None:
    """`natslab scenario --list`, and `check` and `chaos` as far as they go without a server."""
    code = (
        "import sys\n"
        "from dashboard.commands.main import main\n"
        "codes = [main(['scenario', '--list']), main(['check', '--data-dir', sys.argv[1]]),"
        " main(['chaos', '--events', '0'])]\n"
        "print(codes, sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[0, 2, 2] []"


def test_no_module_or_class_is_too_long() -> None:
    too_long = []
    for name, path in product_modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []
