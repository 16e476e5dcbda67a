"""No secret anywhere: a full release with credentials fetched from OpenBao, headless as a
subprocess (--json, --junit), in process (logs), and in the console (screen captures);
then every file written, every log line, every event and every screen is searched for any
token or kubeconfig content."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from console.cli import main
from tests.faults.conftest import events_of, releases, secrets_of, vault_fleet
from tests.ui.ui_helpers import repainted, wait_for


def hits(haystack: str, needles: list[str]) -> list[str]:
    """The needles found in haystack (shortened, so a failure does not print a secret)."""
    return [f"{n[:4]}...({len(n)} chars)" for n in needles if n in haystack]


def files_text(*roots: Path) -> dict[str, str]:
    """Every file under the roots, as text (bytes decoded leniently; .git objects
    are zlib-compressed, so the ledger is also read through `git log -p` below)."""
    found = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                found[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return found


async def screens_of_a_release(config) -> list[str]:
    """Run a release from the console and capture its screens (grid, detail, history)."""
    from console.ui.app import ReleaseConsoleApp
    from console.ui.screens.detail import DetailScreen
    from console.ui.screens.history import HistoryScreen
    from console.ui.screens.release_form import ReleaseFormScreen
    app = ReleaseConsoleApp(config, status_interval=0, operator="alice",
                            engine_options={"grace": 1.0, "status_timeout": 10.0})
    shots = []
    async with app.run_test(size=(140, 40)) as pilot:
        async def until(predicate, what: str, timeout: float = 60.0) -> None:
            await wait_for(pilot, predicate, timeout, what=what)

        await until(app._engine_ready.is_set, "the engine")
        await app.workers.wait_for_complete()
        await repainted(pilot)
        shots.append(app.export_screenshot())
        await pilot.press("n")
        await until(lambda: isinstance(app.screen, ReleaseFormScreen), "the form")
        await pilot.click("#strategy-parallel")
        await pilot.click("#tag")
        await pilot.press(*"v3")
        shots.append(app.export_screenshot())
        await pilot.press("enter")
        await until(lambda: app.state.release is not None and
                    app.state.release.outcome is not None, "the end of the release")
        await repainted(pilot)
        shots.append(app.export_screenshot())
        await pilot.press("enter")          # the cursor's cluster: pods, events, errors
        await until(lambda: isinstance(app.screen, DetailScreen) and (
            app.screen.detail is not None or app.screen.read_error), "the cluster's detail")
        await pilot.pause()                 # drawn
        shots.append(app.export_screenshot())
        await pilot.press("escape")
        await pilot.press("h")              # the history ledger
        await until(lambda: isinstance(app.screen, HistoryScreen) and (
            app.screen.releases or app.screen.error), "the ledger's releases")
        await pilot.pause()                 # drawn
        shots.append(app.export_screenshot())
        assert "v3" in shots[-1]            # the screen searched is the filled ledger
    assert app.state.release.outcome == "ok"
    return shots


def test_no_secret_in_files_logs_events_or_screens(world, bao, tmp_path, monkeypatch,
                                                   caplog, capsys):
    w = world(["a", "b"])
    path, texts = vault_fleet(w, bao, tmp_path)
    needles = secrets_of(texts, bao.root_token)
    assert len(needles) >= 6
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)

    # 1. Headless, as a CI job: a real process, --json events, a JUnit report.
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "console", "--config", str(path), "deploy",
                           "--tag", "v1", "--strategy", "parallel", "--json",
                           "--junit", str(junit)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    # The process's private credential files (CA data for the client) went with it.
    assert list(scratch.iterdir()) == []
    events = events_of(proc.stdout)
    assert events[-1]["outcome"] == "ok"
    assert not hits(proc.stdout + proc.stderr, needles)

    # 2. In process, every log record of every logger at DEBUG; plus a failing release
    #    (its errors are where a secret would most likely slip out) and status/history.
    caplog.set_level(logging.DEBUG)
    w.fleet.set_faults("b", never_pull=["v2"])
    assert main(["--config", str(path), "deploy", "--tag", "v2", "--strategy", "parallel",
                 "--json", "--fail-fast-grace", "0.3"]) == 1
    assert main(["--config", str(path), "status"]) == 0
    assert main(["--config", str(path), "history"]) == 0
    w.fleet.set_faults("b", never_pull=[])
    captured = capsys.readouterr()
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert not hits(captured.out + captured.err + logs, needles)
    assert events_of(captured.out)[-1]["outcome"] == "failed"

    # The in-process console's private dir (0700, removed at exit) holds the CA files
    # the Kubernetes client needs - and no token.
    from console.kube.private_files import private_dir
    private = private_dir()
    assert private.stat().st_mode & 0o077 == 0
    tokens = secrets_of(texts, bao.root_token, certificates=False)
    for name, text in files_text(private).items():
        assert not hits(text, tokens), name

    # 3. The console: a release from the form, screens captured along the way.
    from console.config import load
    shots = asyncio.run(screens_of_a_release(load(path)))
    assert any("v3" in s for s in shots)
    assert not hits("\n".join(shots), needles)

    # 4. Every file written: the ledger (work tree and every commit), the JUnit report,
    #    temp files the console made, its home directory.
    ledger_dir = w.config.app.history.path
    written = files_text(ledger_dir, junit.parent, scratch, Path(os.environ["HOME"]))
    assert any(p.endswith(".jsonl") for p in written) and str(junit) in written
    for name, text in written.items():
        assert not hits(text, needles), name
    log = subprocess.run(["git", "-C", str(ledger_dir), "log", "-p", "--all"],
                         capture_output=True, text=True, timeout=30).stdout
    assert "v3" in log and not hits(log, needles)
    # The ledger tells the truth about all three releases.
    recorded = sorted((r.version, r.outcome) for r in releases(load(path)).values()
                      if r.kind == "release")
    assert recorded == [("v1", "ok"), ("v2", "failed"), ("v3", "ok")]
