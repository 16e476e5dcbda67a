"""The engine stays free of the UI: no module outside `console.ui` may load Textual.

Each module is imported in a fresh interpreter, so one module's imports cannot hide
another's. `console.cli.ui_cmd` and `demo_cmd` start the console, so they may import
it - but only inside their functions, so `release-console deploy` stays light.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import console

UI_PACKAGE = "console.ui"


def headless_modules() -> list[str]:
    """Every importable module of the package outside the UI."""
    names = []
    for info in pkgutil.walk_packages(console.__path__, prefix="console."):
        if info.name == UI_PACKAGE or info.name.startswith(UI_PACKAGE + "."):
            continue
        if info.name == "console.__main__":
            continue  # runs the CLI when imported
        names.append(info.name)
    return names


def test_there_are_headless_modules_to_check() -> None:
    assert "console.events" in headless_modules()
    assert "console.cli" in headless_modules()


IMPORT_ALL = (
    "import importlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    importlib.import_module(name)\n"
    "print('textual' in sys.modules)\n"
)


def imports_textual(names: list[str]) -> bool:
    """Import `names` in a fresh interpreter; did Textual get loaded?"""
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL, *names], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, f"importing {names} failed:\n{out.stderr[-2000:]}"
    return out.stdout.strip() == "True"


def test_no_headless_module_imports_textual() -> None:
    names = headless_modules()
    if imports_textual(names):
        # Name the culprits: one interpreter per module only when something is wrong.
        offenders = [name for name in names if imports_textual([name])]
        raise AssertionError(f"these modules import textual: {offenders}")


def test_the_check_can_see_textual() -> None:
    # Guards the check itself: importing the UI package must be detected.
    assert imports_textual(["textual.app"])
