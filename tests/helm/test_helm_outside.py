"""What helm run outside the console leaves behind, on the simulator and on the lab:

- an operator's `helm rollback` or `helm upgrade` is DRIFT in `status` (the live version
  or Helm revision is not what the ledger recorded), and the next release clears it;
- a first install left `pending-install` by a killed helm: `status` marks the cluster
  NEEDS ATTENTION, pre-flight refuses a release there (exit 2, nothing touched) and names
  the recovery (`helm uninstall`, as nothing was ever deployed), and after it a release
  installs revision 1 afresh;
- an upgrade left `pending-upgrade`: the same marks, and the recovery named
  (`release-console rollback CLUSTER --to VERSION`, a `helm rollback`) works.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from console.cli import main

from .conftest import APP, CHART


def status_json(cli: list[str], capsys) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["status", *cli, "--json"]) == 0
    return {c["cluster"]: c for c in json.loads(capsys.readouterr().out)["clusters"]}


def status_line(cli: list[str], capsys, cid: str) -> str:
    capsys.readouterr()
    assert main(["status", *cli]) == 0
    return next(x for x in capsys.readouterr().out.splitlines() if x.startswith(cid + " "))


def test_an_outside_helm_rollback_or_upgrade_is_drift(chart_stage, capsys):
    s = chart_stage
    cli = ["--config", str(s.write())]
    for tag in ("v1", "v2"):
        assert main(["deploy", *cli, "--tag", tag, "--clusters", "c0,c1", "--strategy",
                     "parallel", "--yes"]) == 0
    assert not any(c["drift"] for c in status_json(cli, capsys).values())

    s.helm_run("c0", "rollback", APP, "1")    # an operator, by hand
    assert s.revisions("c0")[-1] == (3, "deployed", "v1")
    by = status_json(cli, capsys)
    assert (by["c0"]["version"], by["c0"]["helm_revision"], by["c0"]["recorded"],
            by["c0"]["recorded_helm_revision"], by["c0"]["drift"]) == ("v1", 3, "v2", 2, True)
    assert not by["c1"]["drift"]
    assert "DRIFT (ledger says v2)" in status_line(cli, capsys, "c0")
    # An outside upgrade of the same version (other values) is drift by revision.
    s.helm_run("c1", "upgrade", APP, str(CHART), "--reuse-values", "--set", "replicas=3")
    line = status_line(cli, capsys, "c1")
    assert "v2 (helm r3" in line and "DRIFT (ledger says Helm revision 2, live 3)" in line

    # Back to the same version by hand (revision 4 runs v2 again): still drift, by revision.
    s.helm_run("c0", "rollback", APP, "2")
    line = status_line(cli, capsys, "c0")
    assert "v2 (helm r4" in line and "DRIFT (ledger says Helm revision 2, live 4)" in line

    # A release through the console records the new revision: no drift left.
    assert main(["deploy", *cli, "--tag", "v3", "--clusters", "c0", "--yes"]) == 0
    by = status_json(cli, capsys)
    assert (by["c0"]["version"], by["c0"]["helm_revision"], by["c0"]["drift"]) == \
        ("v3", 5, False)


def leave_pending(s, cid: str, tag: str) -> str:
    """A `helm upgrade --install --wait` of a tag that never pulls, killed once Helm stored
    its pending revision and the Deployment is written (what a helm killed past its
    timeout, or with a lost CI runner, leaves): the release is stuck. Its status."""
    s.helm_json(cid, "list")   # the admin kubeconfig
    ns = s.ns(cid)
    first = s.fleet.get(cid, "apps/deployments", ns, APP) is None
    wanted = "pending-install" if first else "pending-upgrade"
    proc = subprocess.Popen(
        [str(s.helm), "upgrade", "--install", APP, str(CHART), "-n", ns, "--create-namespace",
         "--kubeconfig", str(s.directory / f"admin-{cid}.yaml"), "--wait", "--timeout",
         "10m", "--reuse-values", "--set-string", f"image.tag={tag}", "--set-string",
         "image.digest=", "--set-string", f"cluster={cid}", "--set-string",
         "image.repository=registry.example.com/apps/user-service"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={"HELM_DRIVER": "secret", "HOME": str(s.directory),
             "PATH": os.environ.get("PATH", "")})

    def written() -> bool:
        labels = [(x.get("metadata") or {}).get("labels") or {}
                  for x in s.fleet.list(cid, "/secrets", ns)]
        dep = s.fleet.get(cid, "apps/deployments", ns, APP)
        return any(lab.get("owner") == "helm" and lab.get("status") == wanted
                   for lab in labels) and dep is not None and \
            dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":" + tag)

    try:
        deadline = time.monotonic() + 120
        while not written():
            assert proc.poll() is None, f"helm ended before its {wanted} was seen"
            assert time.monotonic() < deadline, f"no {wanted} revision within 120 s"
            time.sleep(0.05)   # polling a condition, not waiting for a result
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert s.helm_json(cid, "history", APP)[-1]["status"] == wanted
    return wanted


def test_a_first_install_left_pending_is_flagged_refused_and_recovered(chart_stage, capsys):
    s = chart_stage
    cli = ["--config", str(s.write())]
    assert leave_pending(s, "c0", "v0-broken") == "pending-install"

    by = status_json(cli, capsys)
    assert (by["c0"]["helm_status"], by["c0"]["helm_revision"]) == ("pending-install", 1)
    assert "NEEDS ATTENTION: helm release pending-install" in status_line(cli, capsys, "c0")

    # Pre-flight refuses a release there, says what is wrong and how to recover.
    capsys.readouterr()
    code = main(["deploy", *cli, "--tag", "v1", "--clusters", "c0", "--yes"])
    out = capsys.readouterr().out
    assert code == 2, out
    assert "is pending-install (revision 1)" in out and "nothing was ever deployed" in out
    found = re.search(r"recover with `(helm uninstall [^`]+)` \(with cluster c0's kubeconfig\)",
                      out)
    assert found, out
    assert [h["status"] for h in s.helm_json("c0", "history", APP)] == ["pending-install"]

    # The recovery it names works: run as the operator, then a release installs afresh.
    command = found.group(1).split()
    assert command[:3] == ["helm", "uninstall", APP] and command[3:] == ["-n", s.ns("c0")]
    s.helm_run("c0", *command[1:3])
    assert main(["deploy", *cli, "--tag", "v1", "--clusters", "c0", "--yes"]) == 0
    assert s.revisions("c0") == [(1, "deployed", "v1")]
    assert s.version("c0") == "v1"
    by = status_json(cli, capsys)
    assert (by["c0"]["helm_status"], by["c0"]["drift"]) == ("deployed", False)


def test_an_upgrade_left_pending_is_flagged_refused_and_rolled_back(chart_stage, capsys):
    s = chart_stage
    cli = ["--config", str(s.write())]
    assert main(["deploy", *cli, "--tag", "v1", "--clusters", "c0", "--yes"]) == 0
    assert leave_pending(s, "c0", "v2-broken") == "pending-upgrade"

    by = status_json(cli, capsys)
    # What runs is still the last deployed revision; the release is pending.
    assert (by["c0"]["helm_status"], by["c0"]["helm_revision"]) == ("pending-upgrade", 1)
    assert "NEEDS ATTENTION: helm release pending-upgrade" in status_line(cli, capsys, "c0")
    capsys.readouterr()
    code = main(["check", *cli, "--tag", "v3", "--clusters", "c0", "--json"])
    doc = json.loads(capsys.readouterr().out)
    dry = next(r for r in doc["results"] if r["check"] == "dry-run")
    assert code == 2 and not dry["ok"] and "pending-upgrade (revision 2)" in dry["detail"]
    assert "recover with `release-console rollback c0 --to v1`" in dry["detail"], dry

    # The recovery it names works.
    assert main(["rollback", "c0", "--to", "v1", *cli, "--yes"]) == 0
    assert s.revisions("c0")[-1] == (3, "deployed", "v1") and s.version("c0") == "v1"
    capsys.readouterr()
    assert main(["check", *cli, "--tag", "v3", "--clusters", "c0", "--json"]) == 0
    assert main(["deploy", *cli, "--tag", "v3", "--clusters", "c0", "--yes"]) == 0
    assert s.revisions("c0")[-1] == (4, "deployed", "v3")
