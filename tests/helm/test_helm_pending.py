"""A helm killed mid-upgrade leaves its release `pending-upgrade`: `status` shows that
state as needing attention (not the last deployed revision), pre-flight says what is
wrong and how to recover, and `rollback CLUSTER --to VERSION` recovers it."""

from __future__ import annotations

import json
import os
import subprocess
import time

from console.cli import main


def leave_pending_upgrade(w, cid: str) -> None:
    """Run `helm upgrade` by hand on a slow cluster and kill it once its pending-upgrade
    revision is stored (what a helm killed past its timeout leaves)."""
    w.fleet.set_faults(cid, latency=(0.5, 0.5))
    env = {"HELM_DRIVER": "secret", "HOME": str(w.config_path.parent),
           "PATH": os.environ.get("PATH", "")}
    proc = subprocess.Popen([str(w.helm), "upgrade", "user-service", w.config.app.chart.chart,
                             "-n", cid, "--kubeconfig", str(w.kubeconfig(cid)),
                             "--reuse-values", "--set", "image.tag=v2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            labels = [(s.get("metadata") or {}).get("labels") or {}
                      for s in w.fleet.list(cid, "/secrets", cid)]
            if any(lab.get("status") == "pending-upgrade" for lab in labels):
                break
            assert proc.poll() is None, "helm ended before its pending revision was seen"
            time.sleep(0.02)   # polling a condition, not waiting for a result
        else:
            raise AssertionError("no pending-upgrade revision within 60 s")
    finally:
        proc.kill()
        proc.wait(timeout=30)
        w.fleet.set_faults(cid, latency=(0.0, 0.0))
    assert w.history(cid)[-1]["status"] == "pending-upgrade"


def test_a_pending_upgrade_shows_in_status_preflight_and_is_recovered(helm_world, capsys):
    w = helm_world(["h1"])
    assert w.release("v1").exit_code == 0
    leave_pending_upgrade(w, "h1")

    assert main(["status", "--config", str(w.config_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["clusters"][0]["helm_status"] == "pending-upgrade"
    assert main(["status", "--config", str(w.config_path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("h1"))
    assert "pending-upgrade" in line and "NEEDS ATTENTION" in line

    code = main(["check", "--config", str(w.config_path), "--tag", "v3", "--json"])
    doc = json.loads(capsys.readouterr().out)
    rows = doc["results"] if isinstance(doc, dict) else doc
    dry = next(r for r in rows if r["check"] == "dry-run")
    assert code != 0 and not dry["ok"]
    assert "pending-upgrade" in dry["detail"]
    assert "release-console rollback h1 --to v1" in dry["detail"], dry["detail"]

    # The recovery the message names works.
    assert main(["rollback", "h1", "--to", "v1", "--config", str(w.config_path),
                 "--yes"]) == 0
    capsys.readouterr()
    assert w.history("h1")[-1]["status"] == "deployed"
    assert main(["check", "--config", str(w.config_path), "--tag", "v3", "--json"]) == 0
    capsys.readouterr()
