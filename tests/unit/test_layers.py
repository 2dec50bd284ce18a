"""The architecture rule: the event system and the non-UI half of the dashboard never load Textual."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import dashboard

ROOT = Path(__file__).resolve().parents[2]
UI_MODULES = {"dashboard.app"}
UI_PACKAGES = ("dashboard.widgets", "dashboard.screens")


def non_ui_modules() -> list[str]:
    names = ["publisher", "listeners"]
    for package in ("publisher", "listeners", "dashboard"):
        for info in pkgutil.iter_modules([str(ROOT / package)]):
            name = f"{package}.{info.name}"
            if name in UI_MODULES or name.startswith(UI_PACKAGES) or info.ispkg:
                continue
            names.append(name)
    return names


def test_non_ui_modules_do_not_import_textual() -> None:
    modules = non_ui_modules()
    assert "dashboard.lab" in modules and "listeners.account_listener" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"textual imported by the non-UI modules: {result.stdout}"


def test_event_system_does_not_import_dashboard() -> None:
    for package in ("publisher", "listeners"):
        for path in (ROOT / package).glob("*.py"):
            text = path.read_text()
            assert "import dashboard" not in text and "from dashboard" not in text, path


def test_dashboard_package_is_importable() -> None:
    assert dashboard.__name__ == "dashboard"
