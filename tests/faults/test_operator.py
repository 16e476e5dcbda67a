"""Who released: one function names the operator for the CLI and the TUI, and a hostile
name (a newline, `<>`) cannot forge a `deployment-history.log` line or a Git identity."""

from __future__ import annotations

import json
import re
import subprocess

from console.cli import main
from console.history import Ledger
from tests.faults.conftest import APP

FORGED = "2026-12-01T00:00:00Z - user-service - evil - prod - ok by root"
HUMAN_LINE = re.compile(rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ - {APP} - v\d - [a-z,]+ - ok by .+$")


def test_a_newline_in_the_operator_forges_no_history_line(world, monkeypatch, capsys):
    w = world(["a", "b"])
    monkeypatch.setenv("BUILD_USER_ID", f"mallory\n{FORGED}\r\n<evil@x>")
    for tag in ("v1", "v2"):
        assert main(["deploy", "--config", str(w.config_path), "--tag", tag]) == 0
    capsys.readouterr()
    ledger = Ledger.for_config(w.config)
    try:
        log = (ledger.path / "deployment-history.log").read_text().splitlines()
        records = [json.loads(line) for line in ledger.file.read_text().splitlines()]
        authors = subprocess.run(["git", "-C", str(ledger.path), "log", "--format=%an|%ae"],
                                 capture_output=True, text=True, timeout=30).stdout
    finally:
        ledger.close()
    assert len(log) == 2 and all(HUMAN_LINE.match(line) for line in log), log
    assert not any(line.startswith(FORGED[:20]) for line in log)
    operators = {rec["operator"] for rec in records if "operator" in rec}
    assert operators == {f"mallory {FORGED} evil@x"}, operators
    for line in authors.splitlines():
        name, email = line.split("|")
        assert "<" not in name and ">" not in name and " " not in email, line


def test_the_cli_and_the_tui_name_the_same_operator(world, monkeypatch, no_git_identity):
    """Both take it from their engine's `Session` (the TUI's opens in its engine process:
    tests/ui/test_session_wiring.py); unless given, the TUI names no one of its own."""
    from console.engine import Engine
    from console.session import Session
    from console.ui.app import ReleaseConsoleApp
    w = world(["a"])
    assert ReleaseConsoleApp(w.config).operator == "operator"   # no engine, no session yet
    for variable, name in ((None, "carol"), ("BUILD_USER_ID", "ci-bot")):
        if variable:
            monkeypatch.setenv(variable, name)
        engine = Engine(w.config)
        try:
            with Session(w.config, engine) as session:
                assert session.operator == name
        finally:
            engine.close()
