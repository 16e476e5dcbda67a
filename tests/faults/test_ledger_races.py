"""Consoles starting at the same moment on a ledger that does not exist yet."""

from __future__ import annotations

import subprocess
import sys
import time

from console.history import Ledger
from tests.faults.conftest import APP
from tests.history.conftest import git

# Each process sleeps until the same wall-clock moment, then opens (creates) the ledger.
OPEN = """
import sys, time
from console.history import Ledger
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
remote = sys.argv[3] or None
Ledger(sys.argv[2], {app!r}, remote=remote, git_timeout=20).close()
""".format(app=APP)


def test_consoles_creating_a_new_ledger_at_once_all_open_it(tmp_path, bare_remote):
    path = tmp_path / "history"
    at = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, str(at), str(path),
                               str(bare_remote) if i % 2 == 0 else ""],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
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
