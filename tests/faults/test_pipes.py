"""`status | head` and `history --json | head`: a reader that stops early ends the output
quietly - no BrokenPipeError traceback, and the command's own exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from console.history import Ledger
from tests.faults.conftest import APP


def run_piped(w, command: str) -> tuple[str, str, int]:
    """`release-console COMMAND | head -1` in bash: (head's stdout, stderr, console's exit)."""
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(w.config_path)}
    script = f'"{sys.executable}" -m console {command} | head -1; echo "exit=${{PIPESTATUS[0]}}" >&2'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)
    err, _, code = done.stderr.rpartition("exit=")
    return done.stdout, err, int(code)


def test_history_json_into_head_stops_quietly(world):
    w = world(["a"])
    ledger = Ledger.for_config(w.config)
    ledger.close()
    # A ledger far bigger than a pipe's buffer, so the console is still writing when
    # `head` has its line and goes.
    with open(ledger.file, "a") as handle:
        for n in range(3000):
            handle.write(json.dumps({"type": "release", "v": 2, "id": f"r-{n:04}", "app": APP,
                                     "version": f"1.{n}", "targets": ["a"],
                                     "operator": "alice", "start": "2026-11-20T09:00:00Z"})
                         + "\n")
            handle.write(json.dumps({"type": "end", "v": 2, "release": f"r-{n:04}",
                                     "outcome": "ok", "exit_code": 0,
                                     "end": "2026-11-20T09:00:05Z"}) + "\n")
    out, err, code = run_piped(w, "history --json")
    assert json.loads(out)["id"] == "r-0000"
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 0


def test_status_into_a_closed_pipe_stops_quietly_with_its_exit_code(world):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    out, err, code = run_piped(w, "status")
    assert out.startswith("CLUSTER")
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 0
    # The reader gone before the first line (deterministic: `head` may or may not
    # have gone by the time the rest is written above).
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(w.config_path)}
    try:
        done = subprocess.run([sys.executable, "-m", "console", "status"], stdout=write,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120,
                              stdin=subprocess.DEVNULL)
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 0


def test_deploy_json_into_head_keeps_releasing_and_its_exit_code(world):
    w = world(["a", "b"])
    out, err, code = run_piped(w, "deploy --tag v1 --strategy parallel --json")
    assert json.loads(out)["kind"] == "release_planned"
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    # The reader went away after one line; the release did not: both clusters run v1.
    assert code == 0
    assert [w.version(c) for c in ("a", "b")] == ["v1", "v1"]
