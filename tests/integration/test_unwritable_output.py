"""`deploy --json` whose stdout cannot be written (/dev/full answers every write with
ENOSPC), asked at its terminal for a gate, as a real process on the simulator: the
release goes on, the terminal's question is asked, and stderr says how many event lines
were not printed and why.

Before, the printer thread died at the first failed write; the gate question then waited
for ever for lines nobody would take, holding the release's leases."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading

from tests.integration.conftest import wait_for

ONE = {"canary": {"waves": [["a"], ["b"]], "gates": True}}


def test_the_gate_question_is_asked_when_stdout_cannot_be_written(world):
    w = world(["a", "b"], strategies=ONE, readiness_delay=0.2, jitter=0.0)
    leader, follower = pty.openpty()
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "console", "deploy", "--json",
                                 "--config", str(w.config_path), "--tag", "v2",
                                 "--strategy", "canary"],
                                stdin=follower, stdout=full, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ))
    os.close(follower)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_for(lambda: w.version("a") == "v2", timeout=90, what="wave 1 deployed")
        wait_for(lambda: any("wave 1 finished" in e for e in errors), timeout=60,
                 what=f"the terminal's gate question (stderr: {errors[-5:]})")
        os.write(leader, b"y\n")
        assert proc.wait(timeout=120) == 0, errors[-10:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        os.close(leader)
        reader.join(timeout=30)
    assert w.version("b") == "v2", errors[-10:]
    told = [e for e in errors if "event line(s) not printed: OSError" in e]
    assert told and "No space left on device" in told[0], errors[-10:]
    assert not any("Traceback" in e for e in errors), errors
