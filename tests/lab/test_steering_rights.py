"""Who may steer a release that spans clusters, on real Kubernetes (issue 15): someone
whose credentials have the app's rights (the printed RBAC, real TokenRequest tokens, the
real RBAC authorizer) on the release's control-lease cluster only - c0, the first of its
targets - cannot approve its gate or pause it: `control` exits 2 naming the clusters
where the rights are missing, a request written onto c0's Lease by hand is refused by
the release (recorded), and the gate stays shut until someone with rights everywhere
approves. The simulator's authorizer is not the real one: this runs on the lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from console.history import Ledger
from console.locks import control as wire
from console.locks import lease_name
from console.rbac import SERVICE_ACCOUNT, manifests
from tests.lab.conftest import APP, Stage, _namespaces, wait_for
from tests.lab.test_least_privilege import kubectl

pytestmark = pytest.mark.real


def control(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", "control", "--config",
                           str(config), *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_rights_on_one_cluster_do_not_steer_a_release_across_others(lab, tmp_path):
    stage = Stage("lab", lab, tmp_path, f"steer{next(_namespaces)}-{{cluster}}")
    stage.write(strategies={"canary": {"waves": [["c0"], ["c1", "c2"]], "gates": True}})
    config = stage.config
    # Mallory: the ServiceAccount with the printed rules on c0; on c1 and c2 the same
    # ServiceAccount exists (a real, authenticated token) but its binding is gone.
    mallory = tmp_path / "mallory"
    mallory.mkdir()
    text = stage.config_path.read_text()
    for cid in ("c0", "c1", "c2"):
        admin = tmp_path / f"admin-{cid}.yaml"
        admin.write_text(yaml.safe_dump(lab.kubeconfig(cid)))
        kubectl(admin, "apply", "--server-side", "-f", "-",
                stdin=manifests(config.cluster(cid), config))
        if cid != "c0":
            kubectl(admin, "-n", stage.ns(cid), "delete", "rolebinding", SERVICE_ACCOUNT)
        token = lab.token(cid, stage.ns(cid), SERVICE_ACCOUNT)
        (mallory / f"{cid}.yaml").write_text(yaml.safe_dump(lab.kubeconfig(cid, token)))
        text = text.replace(str(stage.config_path.parent / f"{cid}.yaml"),
                            str(mallory / f"{cid}.yaml"))
    mallory_config = mallory / "clusters.yaml"
    mallory_config.write_text(text)

    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(stage.config_path)}
    deploy = subprocess.Popen([sys.executable, "-m", "console", "deploy", "--json", "--tag",
                               "v2", "--strategy", "canary", "--wait-for-approval",
                               "--gate-timeout", "10m"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env,
                              stdin=subprocess.DEVNULL, cwd=tmp_path)
    events: list[dict] = []
    try:
        for line in deploy.stdout:
            events.append(json.loads(line))
            if events[-1]["kind"] == "gate_waiting":
                break
        assert events and events[-1]["kind"] == "gate_waiting", deploy.stderr.read()
        rid = events[0]["release"]
        # Through the CLI: c1's and c2's Leases are out of reach (the API server refuses
        # Mallory there), so the request is on c0's alone, and the release refuses it.
        approve = control(mallory_config, rid, "approve")
        assert approve.returncode == 2, (approve.stdout, approve.stderr)
        assert "refused" in approve.stderr and "c1, c2" in approve.stderr
        assert "every cluster it targets" in approve.stderr
        pause = control(mallory_config, rid, "pause")
        assert pause.returncode == 2 and "every cluster it targets" in pause.stderr
        # By hand, past the CLI: on c0's Lease alone, which Mallory may update. The
        # release finds the request on none of its other Leases and refuses it.
        from console.config import load
        from console.engine import Engine
        engine = Engine(load(mallory_config))
        try:
            driver = engine.driver("c0")
            kube = driver.client

            def ask(current: dict, notes: dict) -> bool:
                reqs = wire.decoded(current, wire.CONTROL, [])
                notes[wire.CONTROL] = wire.dump(
                    [*reqs, {"id": "m1", "action": "approve", "by": "mallory",
                             "confirmed": True, "gate": 1}])
                return True
            wire.change(kube, driver.namespace, lease_name(APP), ask, 30)
            acks = wait_for(lambda: wire.decoded(
                wire.read(kube, driver.namespace, lease_name(APP), 30), wire.ACK, {}).get("m1"),
                "the release's answer to the hand-written approval", timeout=60)
        finally:
            engine.close()
        assert acks["ok"] is False and acks.get("refused"), acks
        assert "c1, c2" in acks["detail"] and "every cluster it targets" in acks["detail"]
        assert stage.version("c1") is None
        # The admin (rights on every cluster) approves: the release goes on.
        ok = control(stage.config_path, rid, "approve")
        assert ok.returncode == 0, ok.stderr
        deploy.wait(timeout=180)
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait(timeout=30)
    assert deploy.returncode == 0, deploy.stderr.read()
    assert [stage.version(c) for c in ("c0", "c1", "c2")] == ["v2"] * 3
    ledger = Ledger.for_config(stage.config)
    try:
        steer = ledger.steering(rid)
    finally:
        ledger.close()
    refused = [(s["action"], s["by"]) for s in steer if s.get("refused")]
    sa = f"system:serviceaccount:{stage.ns('c0')}:{SERVICE_ACCOUNT}"
    assert refused == [("approve", sa), ("pause", sa), ("approve", "mallory")], steer
    decided = [s for s in steer if s["action"] == "gate_approve"]
    assert len(decided) == 1 and decided[0]["by"] != "mallory"
