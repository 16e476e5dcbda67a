"""The Helm driver's done-when stories, written once and run on the simulator and on the
lab's real Kubernetes (the `lab` case is marked `real`; the shared `lab` fixture fails it,
never skips it, when the lab's programs are not built).

- a canary release of the example chart to three clusters ends with one more Helm
  revision running the new tag on each; a tag that never pulls is undone by `helm
  rollback` (one more revision, the old tag); `rollback CLUSTER --to VERSION` lands on
  the revision that ran it; `status` shows chart version, app version and revision per
  cluster;
- a chart release and its rollbacks work with only the rights `rbac CLUSTER` prints;
- pre-flight sends the rendered chart to the API server: a containerPort the server
  refuses fails `dry-run` after a good v1 (Helm's own --dry-run=server passes it).
"""

from __future__ import annotations

import json

import pytest
import yaml

from console.cli import main
from console.config import load
from console.engine import Engine, ReleaseRequest
from console.rbac import manifests
from console.sim import SimFleet

from .conftest import APP, approve
from .stage import IDS, ChartStage

def test_canary_broken_tag_rollback_to_version_and_status(chart_stage, capsys):
    s = chart_stage
    config = s.write()
    cli = ["--config", str(config)]
    assert main(["deploy", *cli, "--tag", "v1", "--strategy", "parallel", "--yes"]) == 0
    assert main(["deploy", *cli, "--tag", "v2", "--strategy", "canary", "--yes"]) == 0
    for cid in IDS:
        assert s.revisions(cid) == [(1, "superseded", "v1"), (2, "deployed", "v2")], cid

    # A tag that never pulls: the cluster fails fast and Helm rolls it back.
    assert main(["deploy", *cli, "--tag", "v3-broken", "--clusters", "c2", "--yes",
                 "--fail-fast-grace", "1"]) == 1
    assert s.revisions("c2")[-2:] == [(3, "superseded", "v3-broken"), (4, "deployed", "v2")]
    assert s.helm_json("c2", "history", APP)[-1]["description"] == "Rollback to 2"
    assert s.version("c2") == "v2"

    # A manual rollback to a version lands on the revision that ran it.
    assert main(["rollback", "c0", "--to", "v1", *cli, "--yes"]) == 0
    assert s.revisions("c0")[-1] == (3, "deployed", "v1")
    assert s.helm_json("c0", "history", APP)[-1]["description"] == "Rollback to 1"

    capsys.readouterr()
    assert main(["status", *cli, "--json"]) == 0
    by = {c["cluster"]: c for c in json.loads(capsys.readouterr().out)["clusters"]}
    assert [(by[c]["version"], by[c]["helm_revision"], by[c]["chart_version"],
             by[c]["app_version"], by[c]["helm_status"]) for c in IDS] == [
        ("v1", 3, "0.1.0", "1.0.0", "deployed"), ("v2", 2, "0.1.0", "1.0.0", "deployed"),
        ("v2", 4, "0.1.0", "1.0.0", "deployed")]
    assert main(["status", *cli]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "v1 (helm r3, chart 0.1.0, app 1.0.0, deployed)" in rows["c0"], rows
    assert not any(by[c]["drift"] for c in IDS)


def grant_printed_rights(s: ChartStage, cid: str, text: str) -> str:
    """Give a token exactly the rights `rbac` printed (applied as an admin on the lab)."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    ns = s.ns(cid)
    if s.kind == "sim":
        rules = []
        for doc in docs:
            if doc["kind"] not in ("Role", "ClusterRole"):
                continue
            for rule in doc["rules"]:
                sim_rule = {k: rule[k] for k in ("verbs", "apiGroups", "resources",
                                                 "resourceNames") if k in rule}
                if doc["kind"] == "Role" and rule["resources"] != ["namespaces"]:
                    sim_rule["namespaces"] = [ns]
                rules.append(sim_rule)
        create_namespace_in(s.fleet, cid, ns)
        return s.fleet.add_token(cid, rules)
    paths = {"Namespace": "/api/v1/namespaces",
             "ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
             "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
             "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
             "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
             "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"}
    for doc in docs:
        status, body = s.fleet.request(cid, "POST", paths[doc["kind"]], doc)
        assert status in (201, 409), (doc["kind"], status, body)
    return s.fleet.token(cid, ns, "release-console")


def create_namespace_in(fleet: SimFleet, cid: str, name: str) -> None:
    import ssl

    import httpx
    answer = httpx.post(f"{fleet.url(cid)}/api/v1/namespaces", timeout=10,
                        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                        headers={"Authorization": f"Bearer {fleet.admin_token(cid)}"},
                        verify=ssl.create_default_context(cafile=str(fleet.ca_file)))
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("storage", ["secret", "configmap"])
def test_a_chart_release_with_only_the_rights_rbac_prints(chart_stage, storage):
    s = chart_stage
    config_path = s.write(storage=storage, name=f"fleet-{storage}")
    config = load(config_path)
    token = grant_printed_rights(s, "c0", manifests(config.cluster("c0"), config))
    kubeconfig = config_path.parent / "c0.yaml"
    kubeconfig.write_text(yaml.safe_dump(s.fleet.kubeconfig("c0", token)))
    engine = Engine(load(config_path), grace=1.0)
    try:
        first = engine.run(ReleaseRequest(tag="1.0", clusters="c0"), approve)
        assert first.outcome == "ok", first.preflight.table() if first.preflight else first
        assert engine.run(ReleaseRequest(tag="1.1", clusters="c0"), approve).outcome == "ok"
        broken = engine.run(ReleaseRequest(tag="1.2-broken", clusters="c0"), approve)
        assert broken.clusters[0].outcome == "rolled_back", broken
        assert engine.rollback("c0", "1.0", by="test").outcome == "rolled_back"
    finally:
        engine.close()
    assert s.version("c0") == "1.0"
    assert [h["description"] for h in s.helm_json("c0", "history", APP)][-2:] == [
        "Rollback to 2", "Rollback to 1"]


def test_preflight_sends_the_rendered_chart_to_the_api_server(chart_stage, capsys):
    """After a good v1, a chart whose Deployment the API server refuses (containerPort
    70000) fails pre-flight's dry-run - Helm's own --dry-run=server would pass it."""
    s = chart_stage
    config = s.write()
    cli = ["--config", str(config)]
    assert main(["deploy", *cli, "--tag", "v1", "--clusters", "c0", "--yes"]) == 0
    doc = yaml.safe_load(config.read_text())
    doc["defaults"]["values"]["containerPort"] = 70000
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    capsys.readouterr()
    assert main(["check", *cli, "--tag", "v2", "--clusters", "c0", "--json"]) != 0
    out = json.loads(capsys.readouterr().out)
    rows = out["results"] if isinstance(out, dict) else out
    dry = next(r for r in rows if r["check"] == "dry-run" and r["cluster"] == "c0")
    assert not dry["ok"] and "containerPort" in dry["detail"], dry
    assert [r[0] for r in s.revisions("c0")] == [1]
