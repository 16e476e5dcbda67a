"""Gate approvals given where the release runs (`deploy --yes`, the terminal prompt),
through the CLI as real processes on the simulator: they name the identity the cluster
confirms (SelfSubjectReview), the local name beside it; a strategy with `approvals: 2`
refuses `--yes` (one person), and a yes at the terminal counts as one approval, the
other coming through the control channel from someone else."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading

from tests.integration.conftest import wait_for
from tests.integration.test_steering import as_other_person, control

TWO = {"canary": {"waves": [["a"], ["b"]], "gates": True, "approvals": 2}}
ONE = {"canary": {"waves": [["a"], ["b"]], "gates": True}}
ADMIN = "system:serviceaccount:kube-system:a-admin"


def deploy(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", "deploy", "--json", "--config",
                           str(config), *args], capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def test_yes_names_the_identity_the_cluster_confirms(world):
    w = world(["a", "b"], strategies=ONE, readiness_delay=0.2, jitter=0.0)
    done = deploy(w.config_path, "--tag", "v2", "--strategy", "canary", "--yes")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    decided = [e for e in events if e["kind"] == "gate_decided"]
    assert decided[0]["by"].startswith(f"{ADMIN} (") and "--yes" in decided[0]["by"]


def test_yes_names_the_person_as_the_channels_cluster_does_not_the_first_reached(world):
    # The canary is b; the control channel lives on a (the first target in sorted order),
    # where `control` names the person too: --yes asks a, so one person's yes and their
    # `control approve` are the same approver.
    w = world(["a", "b"], strategies={"canary": {"waves": [["b"], ["a"]], "gates": True}},
              readiness_delay=0.2, jitter=0.0)
    done = deploy(w.config_path, "--tag", "v2", "--strategy", "canary", "--yes")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    decided = [e for e in events if e["kind"] == "gate_decided"]
    assert decided[0]["by"].startswith(f"{ADMIN} ("), decided


def test_yes_is_refused_for_a_strategy_that_needs_two_approvers(world):
    w = world(["a", "b"], strategies=TWO, readiness_delay=0.2, jitter=0.0)
    done = deploy(w.config_path, "--tag", "v2", "--strategy", "canary", "--yes")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "needs 2 distinct approvers" in done.stderr and "--yes is one person" in done.stderr
    assert w.version("a") is None and w.version("b") is None


def test_a_yes_at_the_terminal_is_one_of_two_approvals(world, tmp_path):
    w = world(["a", "b"], strategies=TWO, readiness_delay=0.2, jitter=0.0)
    bob = as_other_person(w, tmp_path, "bob")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "console", "deploy", "--json", "--config",
                             str(w.config_path), "--tag", "v2", "--strategy", "canary"],
                            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    os.close(follower)
    events: list[dict] = []
    errors: list[str] = []
    readers = [threading.Thread(target=lambda: events.extend(
                   json.loads(line) for line in proc.stdout), daemon=True),
               threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        wait_for(lambda: any("wave 1 finished" in e for e in errors), timeout=90,
                 what="the terminal prompt")
        os.write(leader, b"y\n")
        wait_for(lambda: any("1 of 2 approvals" in e for e in errors), timeout=60,
                 what="one of two approvals")
        assert w.version("b") is None and proc.poll() is None   # one is not enough
        rid = events[0]["release"]
        twice = control(w.config_path, rid, "approve")   # the terminal's person again
        assert twice.returncode == 2 and "distinct approvers" in twice.stderr, twice
        assert w.version("b") is None
        second = control(bob, rid, "approve")
        assert second.returncode == 0, second.stderr
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        os.close(leader)
        for reader in readers:
            reader.join(timeout=30)
    assert code == 0, "".join(errors)
    assert w.version("b") == "v2"
    by = [e for e in events if e["kind"] == "gate_decided"][0]["by"]
    assert by.startswith(f"{ADMIN} (") and "at the terminal" in by and by.endswith(", bob")
