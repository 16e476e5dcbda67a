"""The layers hold: no module outside `console.ui` may load Textual, and the import
contracts of pyproject.toml (`lint-imports`) are kept.

Each module is imported in a fresh interpreter, so one module's imports cannot hide
another's. `console.cli.ui_cmd` and `demo_cmd` start the console, so they may import
it - but only inside their functions, so `release-console deploy` stays light.
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]


def lint_imports_program() -> str:
    """The `lint-imports` of this interpreter's environment (import-linter, a test extra)."""
    program = Path(sys.executable).with_name("lint-imports")
    found = str(program) if program.is_file() else shutil.which("lint-imports")
    assert found, "lint-imports not found: install the test extra (pip install -e '.[test]')"
    return found


def lint_imports() -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the checkout, with pyproject.toml's contracts."""
    return subprocess.run([lint_imports_program(), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contracts_of_pyproject_hold() -> None:
    out = lint_imports()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


# Held by contracts of their own (pyproject.toml): the simulator imports nothing of the
# console; the lab needs only the simulator and the binaries.
OUTSIDE_THE_LAYERS = {"console.sim", "console.lab"}


def test_every_module_of_the_console_stands_in_a_layer() -> None:
    # A module in no layer is checked by no layer rule: it could import anything, and
    # anything could import it.
    import tomllib
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c["layers"] for c in contracts["contracts"] if c["type"] == "layers")
    placed = {name.strip() for layer in layers for name in layer.split(":")}
    top = {f"console.{info.name}" for info in pkgutil.iter_modules(console.__path__)}
    assert top - placed - OUTSIDE_THE_LAYERS == set()
    assert OUTSIDE_THE_LAYERS <= top


def lint_a_copy_with(tmp_path: Path, probe: str, text: str) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with pyproject's contracts on a copy of the package that has one
    more module, `probe` (a path under console/) holding `text`."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "console", copy / "console",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "console" / probe).write_text(text)
    config = tmp_path / "pyproject.toml"
    config.write_text((ROOT / "pyproject.toml").read_text())
    env = {**os.environ, "PYTHONPATH": str(copy)}
    return subprocess.run([lint_imports_program(), "--no-cache", "--config", str(config)],
                          cwd=copy, capture_output=True, text=True, timeout=300, env=env)


def test_the_layers_contract_can_fail(tmp_path: Path) -> None:
    # Guards the contracts themselves: an engine module importing the UI must be caught.
    out = lint_a_copy_with(tmp_path, "engine/probe.py", "import console.ui.app\n")
    assert out.returncode != 0
    assert "console.engine.probe -> console.ui.app" in out.stdout


def test_the_lab_contract_can_fail(tmp_path: Path) -> None:
    # The lab needs only the simulator and the binaries: any other module of the console
    # - here the lowest layer's - breaks its contract.
    out = lint_a_copy_with(tmp_path, "lab/probe.py", "import console.names\n")
    assert out.returncode != 0
    assert "console.lab.probe -> console.names" in out.stdout


def test_the_lab_contract_forbids_every_other_module_of_the_console() -> None:
    import tomllib
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lab = next(c for c in contracts["contracts"] if c.get("source_modules") == ["console.lab"])
    top = {f"console.{info.name}" for info in pkgutil.iter_modules(console.__path__)}
    top.add("console.__main__")
    allowed = {"console.lab", "console.sim", "console.binaries"}
    assert top - allowed - set(lab["forbidden_modules"]) == set()


def test_the_console_process_loads_no_kubernetes_client() -> None:
    # The engine (and the client) run in the engine process; the console's own process
    # - the UI thread - imports only the engine's API types.
    ui = [name for name in (info.name for info in pkgutil.walk_packages(
        console.__path__, prefix="console.")) if name.startswith(UI_PACKAGE)]
    ui.append("console.engine.remote")   # the console's side of the engine process
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'"
            " or m.startswith('console.kube')))\n")
    out = subprocess.run([sys.executable, "-c", code, *ui], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
