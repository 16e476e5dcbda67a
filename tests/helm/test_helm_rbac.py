"""`rbac CLUSTER` for a chart: Helm's release storage and nothing more, the Secret warning,
and a release, its automatic rollback and a manual one with only those rights."""

from __future__ import annotations

import ssl

import httpx
import pytest
import yaml

from console.config import load
from console.engine import Engine, ReleaseRequest
from console.rbac import manifests, rules

from .conftest import approve


def role_rules(text: str) -> list[dict]:
    return [r for d in yaml.safe_load_all(text) if d and d["kind"] == "Role" for r in d["rules"]]


def sim_rules(text: str, namespace: str) -> list[dict]:
    """The printed Role and ClusterRole as simulator token rules (what the bindings grant)."""
    out = []
    for doc in yaml.safe_load_all(text):
        if not doc or doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc["rules"]:
            sim_rule = {k: rule[k] for k in ("verbs", "apiGroups", "resources", "resourceNames")
                        if k in rule}
            if doc["kind"] == "Role" and rule["resources"] != ["namespaces"]:
                sim_rule["namespaces"] = [namespace]
            out.append(sim_rule)
    return out


def create_namespace(fleet, cid: str) -> None:
    """The admin creates the namespace (the rbac manifests hold it)."""
    answer = httpx.post(f"{fleet.url(cid)}/api/v1/namespaces", timeout=10,
                        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cid}},
                        headers={"Authorization": f"Bearer {fleet.admin_token(cid)}"},
                        verify=ssl.create_default_context(cafile=str(fleet.ca_file)))
    assert answer.status_code == 201, answer.text


def test_secret_storage_rules_say_they_read_every_secret(helm_world):
    w = helm_world(["h1"])
    text = manifests(w.config.cluster("h1"), w.config)
    assert "WARNING: Helm keeps its release records in Secrets" in text
    assert "read EVERY Secret in namespace 'h1'" in text
    secrets = [r for r in role_rules(text) if r["resources"] == ["secrets"]]
    assert secrets and set(secrets[0]["verbs"]) == {"get", "list", "create", "update", "delete"}
    # Helm's revisions replace the ReplicaSet history: no rights on ReplicaSets.
    assert not [r for r in rules(w.config) if r.resource == "replicasets"]


def test_configmap_storage_grants_no_secret_access(helm_world):
    w = helm_world(["h1"], storage="configmap")
    text = manifests(w.config.cluster("h1"), w.config)
    assert "no access to Secrets is granted" in text
    resources = {res for r in role_rules(text) for res in r["resources"]}
    assert "secrets" not in resources and "configmaps" in resources


@pytest.mark.parametrize("storage", ["secret", "configmap"])
def test_a_chart_release_and_its_rollbacks_run_with_only_the_printed_rights(helm_world,
                                                                            storage):
    w = helm_world(["h1"], storage=storage, never_pull=["*broken*"])
    create_namespace(w.fleet, "h1")
    token = w.fleet.add_token("h1", sim_rules(manifests(w.config.cluster("h1"), w.config),
                                              "h1"))
    w.kubeconfig("h1").write_text(yaml.safe_dump(w.fleet.kubeconfig("h1", token)))
    engine = Engine(load(w.config_path), grace=0.5)
    try:
        first = engine.run(ReleaseRequest(tag="1.0"), approve)
        assert first.outcome == "ok", first.preflight.table() if first.preflight else first
        assert {r.check: r.ok for r in first.preflight.results}["access"]
        assert engine.run(ReleaseRequest(tag="1.1"), approve).outcome == "ok"
        broken = engine.run(ReleaseRequest(tag="1.2-broken"), approve)
        assert broken.clusters[0].outcome == "rolled_back", broken
        assert w.version("h1") == "1.1"
        manual = engine.rollback("h1", "1.0", by="test")
        assert manual.outcome == "rolled_back", manual
    finally:
        engine.close()
    assert w.version("h1") == "1.0"
    assert [h["description"] for h in w.history("h1")][-2:] == ["Rollback to 2",
                                                                "Rollback to 1"]
