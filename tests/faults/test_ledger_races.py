"""Consoles starting at the same moment on a ledger that does not exist yet."""

from __future__ import annotations

import subprocess
import sys

from console.history import Ledger
from tests.faults.conftest import APP
from tests.history.conftest import git

# Each process says it is ready (its imports done), waits for the word, then opens
# (creates) the ledger: all of them at once, however slowly they started.
OPEN = """
import sys
from console.history import Ledger
print("ready", flush=True)
sys.stdin.readline()
remote = sys.argv[3] or None
Ledger(sys.argv[2], {app!r}, remote=remote, git_timeout=20).close()
""".format(app=APP)


def test_consoles_creating_a_new_ledger_at_once_all_open_it(tmp_path, bare_remote):
    path = tmp_path / "history"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, "-", str(path),
                               str(bare_remote) if i % 2 == 0 else ""], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.close()
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
    assert [code for code, _ in results] == [0] * 8, results
    ledger = Ledger(path, APP, remote=str(bare_remote), git_timeout=20)
    try:
        ledger.start_release("r-1", version="v1", targets=("a",))
        ledger.finish_release("r-1", "ok", exit_code=0)
        ledger.flush()
        assert [r.id for r in ledger.releases()] == ["r-1"]
    finally:
        ledger.close()
    # One repository, one first commit; no half-built staging directory left behind.
    assert git(path, "log", "--format=%s").count("start the release history") == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".history")] == []
