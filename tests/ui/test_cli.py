"""`release-console [ui]` and `release-console demo` from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", *args], capture_output=True,
                          text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)


def test_cli_refuses_an_unknown_theme_naming_the_choices(tmp_path: Path) -> None:
    fleet = tmp_path / "clusters.yaml"
    fleet.write_text((ROOT / "clusters.yaml").read_text())
    out = run_cli("--config", str(fleet), "--theme", "nope")
    assert out.returncode == 2
    assert "--theme: no theme named 'nope'" in out.stderr and "release-light" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_console_needs_a_terminal(tmp_path: Path) -> None:
    fleet = tmp_path / "clusters.yaml"
    fleet.write_text((ROOT / "clusters.yaml").read_text())
    out = run_cli("ui", "--config", str(fleet), "--theme", "release-light")
    assert out.returncode == 2
    assert "needs a terminal" in out.stderr and "release-console deploy" in out.stderr


def test_demo_serves_the_fleet_then_stops_it(tmp_path: Path) -> None:
    # Without a terminal the console itself cannot open, but everything before it runs:
    # the simulated fleet starts, the rewritten fleet file loads, the fleet stops again.
    fleet = tmp_path / "clusters.yaml"
    fleet.write_text((ROOT / "clusters.yaml").read_text().replace(
        "manifests: deploy/user-service", f"manifests: {ROOT / 'deploy' / 'user-service'}"))
    out = run_cli("demo", "--config", str(fleet))
    assert out.returncode == 2, out.stderr
    assert "needs a terminal" in out.stderr


def test_cli_reports_a_fleet_file_it_cannot_use_before_asking_for_a_terminal(
        tmp_path: Path) -> None:
    # The console reads the fleet file after its first frame; without a terminal there is
    # no frame, and the fleet file's error is still the one told.
    fleet = tmp_path / "clusters.yaml"
    fleet.write_text("app:\n  name: x\n")
    out = run_cli("ui", "--config", str(fleet))
    assert out.returncode == 2
    assert str(fleet) in out.stderr and "clusters" in out.stderr
    assert "needs a terminal" not in out.stderr and "Traceback" not in out.stderr
