"""`release-console status`: the version matrix, live vs. ledger, with drift after a
hand-made `kubectl set image` (real kubectl against the simulated cluster)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from console.cli import main
from console.history import default_operator

KUBECTL = Path(sys.executable).parent / "kubectl"
IMAGE = "registry.example.com/apps/user-service"


def kubectl_set_image(kubeconfig: Path, cache: Path, namespace: str, tag: str) -> None:
    """What someone does by hand: `kubectl set image` past the console."""
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache),
         "--request-timeout", "30s", "-n", namespace, "set", "image",
         "deployment/user-service", f"user-service={IMAGE}:{tag}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr


def test_status_shows_drift_after_kubectl_set_image(world, capsys, tmp_path):
    w = world(["a", "b", "c"])
    config = str(w.config_path)
    assert main(["deploy", "--config", config, "--tag", "v1", "--strategy", "parallel"]) == 0
    capsys.readouterr()
    kubectl_set_image(w.config_path.parent / "b.yaml", tmp_path / "kubectl-cache", "b", "hotfix")
    assert w.version("b") == "hotfix"

    assert main(["status", "--config", config, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {c["cluster"]: c for c in data["clusters"]}
    assert data["drift"] == ["b"]
    assert [(rows[c]["version"], rows[c]["recorded"], rows[c]["last_good"], rows[c]["drift"])
            for c in "abc"] == [("v1", "v1", "v1", False), ("hotfix", "v1", "v1", True),
                                ("v1", "v1", "v1", False)]
    # Who: the operator at this terminal, by their git identity (as the ledger commits).
    assert rows["a"]["recorded_by"] == default_operator().name
    assert rows["a"]["recorded_at"].startswith(time.strftime("%Y-", time.gmtime()))

    assert main(["status", "--config", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CLUSTER", "LIVE", "RECORDED", "LAST-GOOD", "WHEN", "BY",
                                "READY", "DIGEST", "STATE"]
    by_cluster = {line.split()[0]: line for line in lines[1:4]}
    assert "DRIFT (ledger says v1)" in by_cluster["b"]
    assert "DRIFT" not in by_cluster["a"] and by_cluster["a"].split()[1:4] == ["v1", "v1", "v1"]
    assert lines[-1].startswith("DRIFT: b ")

    # A cluster that does not answer is shown as such, quickly, and is not drift; the
    # matrix is partial, so the exit code says so (4), in both forms.
    w.fleet.kill("c")
    started = time.monotonic()
    assert main(["status", "--config", config, "--json"]) == 4
    elapsed = time.monotonic() - started
    data = json.loads(capsys.readouterr().out)
    c = next(row for row in data["clusters"] if row["cluster"] == "c")
    assert (c["reachable"], c["version"], c["recorded"], c["drift"]) == (False, None, "v1", False)
    assert data["drift"] == ["b"] and data["unreachable"] == ["c"] and elapsed < 20, elapsed
    assert main(["status", "--config", config]) == 4
    captured = capsys.readouterr()
    assert "could not be read: c (exit 4)" in captured.err
    assert [line.split()[:2] for line in captured.out.splitlines()[1:4]] == \
        [["a", "v1"], ["b", "hotfix"], ["c", "?"]]


def test_rollback_to_last_good_uses_the_ledger(world, capsys):
    w = world(["a"])
    config = str(w.config_path)
    # With nothing recorded yet there is no known-good version: a clear error, exit 2.
    w.deploy_everywhere("v0")       # unrecorded (the engine alone)
    assert main(["rollback", "a", "--to", "last-good", "--yes", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "no known-good version other than v0 recorded for cluster 'a'" in err
    assert main(["deploy", "--config", config, "--tag", "v1"]) == 0
    w.fleet.set_faults("a", crash=["v2"])
    assert main(["deploy", "--config", config, "--tag", "v2", "--fail-fast-grace", "0.5"]) == 1
    # The failed v2 was rolled back automatically; someone then sets v3 by hand.
    kubectl_set_image(w.config_path.parent / "a.yaml", w.config_path.parent / "kc", "a", "v3")
    capsys.readouterr()
    assert main(["rollback", "a", "--to", "last-good", "--yes", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "roll back a from v3 to v1 (its last good version; recorded by r-" in out
    assert "a: rolled_back v3 -> v1" in out and w.version("a") == "v1"
