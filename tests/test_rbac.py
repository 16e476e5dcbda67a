"""`release-console rbac`: the manifests parse, grant exactly the console's verbs, and work.

The simulator part gives a token exactly the printed rules and checks that pre-flight's
SelfSubjectAccessReviews pass with it, and that a token missing one verb fails naming it.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml

from console import config as fleet_config
from console.cli import main
from console.errors import ConfigError
from console.rbac import BASE_RULES, manifests, permissions, rules

EXPECTED_ROLE = {
    ("apps", "deployments"): ["get", "list", "watch", "create", "patch", "delete"],
    ("apps", "replicasets"): ["list"],
    ("", "pods"): ["list", "watch"],
    ("", "events"): ["list"],
    ("", "namespaces"): ["get"],
    ("coordination.k8s.io", "leases"): ["get", "create", "update"],
}


def write_fleet(tmp_path, extra_manifest: str = "") -> fleet_config.FleetConfig:
    deploy = tmp_path / "deploy"
    deploy.mkdir(exist_ok=True)
    (deploy / "deployment.yaml").write_text(textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: "${app}"}
        spec:
          replicas: ${replicas}
          selector: {matchLabels: {app: "${app}"}}
          template:
            metadata: {labels: {app: "${app}"}}
            spec:
              containers: [{name: "${app}", image: "${image}"}]
        """))
    if extra_manifest:
        (deploy / "extra.yaml").write_text(extra_manifest)
    path = tmp_path / "clusters.yaml"
    path.write_text(textwrap.dedent("""\
        app: {name: shop, image: registry.example.com/apps/shop, manifests: deploy,
              namespace: "team-{cluster}"}
        defaults: {values: {replicas: 1}}
        clusters:
          - {id: eu, credentials: {kubeconfig: /nonexistent}}
        """))
    return fleet_config.load(path)


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_manifests_parse_with_exact_kinds_and_verbs(tmp_path):
    config = write_fleet(tmp_path)
    text = manifests(config.cluster("eu"), config)
    docs = docs_of(text)
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "Role", "RoleBinding",
                                         "ClusterRole", "ClusterRoleBinding"]
    assert text.count("\n---\n") == 5
    ns, sa, role, binding, crole, cbinding = docs
    assert ns["metadata"]["name"] == "team-eu"
    assert sa["metadata"] == {"name": "release-console", "namespace": "team-eu",
                              "labels": {"app.kubernetes.io/managed-by": "release-console"}}
    assert role["metadata"]["namespace"] == "team-eu"
    assert {(r["apiGroups"][0], r["resources"][0]): r["verbs"] for r in role["rules"]} == EXPECTED_ROLE
    ns_rule = next(r for r in role["rules"] if r["resources"] == ["namespaces"])
    assert ns_rule["resourceNames"] == ["team-eu"]   # its own namespace, nothing else
    assert crole["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
                              {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    for bind, ref in ((binding, role), (cbinding, crole)):
        assert bind["roleRef"]["name"] == ref["metadata"]["name"]
        assert bind["subjects"] == [{"kind": "ServiceAccount", "name": "release-console",
                                     "namespace": "team-eu"}]
    # Nothing grants a wildcard, and nothing cluster-wide beyond reading nodes.
    assert "*" not in text
    # Every rule has its reason as a comment right above it.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[i - 1].strip().startswith("#"), line
    assert "kubectl create token release-console -n team-eu" in text


def test_pre_flight_asks_for_exactly_the_printed_rules(tmp_path):
    config = write_fleet(tmp_path)
    printed = {(r["apiGroups"][0], r["resources"][0], v)
               for d in docs_of(manifests(config.cluster("eu"), config))
               if d["kind"] in ("Role", "ClusterRole") for r in d["rules"] for v in r["verbs"]}
    asked = {(p.group, p.resource, p.verb) for p in permissions(rules(config))}
    assert printed == asked and len(asked) == 15


def test_other_manifest_kinds_get_apply_rights(tmp_path):
    config = write_fleet(tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: shop}\n"
                                   "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    role = docs_of(manifests(config.cluster("eu"), config))[2]
    verbs = {r["resources"][0]: r["verbs"] for r in role["rules"]}
    assert verbs["services"] == ["create", "patch"] and verbs["configmaps"] == ["create", "patch"]
    assert rules(config)[: len(BASE_RULES)] == BASE_RULES


def test_unknown_kind_is_a_config_error(tmp_path):
    config = write_fleet(tmp_path, "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\n")
    with pytest.raises(ConfigError, match=r"extra\.yaml: kind 'CronJob' \(batch/v1\) is not one"):
        rules(config)


def test_a_duplicate_key_in_a_template_is_refused_with_file_and_line(tmp_path):
    """rbac reads the templates with the one safe reader `render` uses: a key given twice
    (which plain YAML would let the last one win) is a ConfigError naming file and line."""
    config = write_fleet(tmp_path, "apiVersion: v1\nkind: Service\nkind: ConfigMap\n"
                                   "metadata: {name: x}\n")
    with pytest.raises(ConfigError, match=r"extra\.yaml:3: kind: duplicate key \(first at line 2\)"):
        rules(config)


def test_cli_prints_yaml_documents(tmp_path, capsys):
    write_fleet(tmp_path)
    assert main(["rbac", "eu", "--config", str(tmp_path / "clusters.yaml")]) == 0
    assert [d["kind"] for d in docs_of(capsys.readouterr().out)][:4] == \
        ["Namespace", "ServiceAccount", "Role", "RoleBinding"]
    assert main(["--config", str(tmp_path / "clusters.yaml"), "rbac", "nope"]) == 2
    assert "unknown cluster 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------- on a simulated cluster


def create_namespace(fleet, cid: str, name: str) -> None:
    """Create a namespace as the cluster admin (plain HTTPS, as `kubectl create ns` would)."""
    answer = httpx.post(f"{fleet.url(cid)}/api/v1/namespaces", timeout=5,
                        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                        headers={"Authorization": f"Bearer {fleet.admin_token(cid)}"},
                        verify=ssl.create_default_context(cafile=str(fleet.ca_file)))
    assert answer.status_code == 201, answer.text


def sim_rules(docs: list[dict], namespace: str) -> list[dict]:
    """The printed Role and ClusterRole as simulator token rules (what the binding grants)."""
    out = []
    for doc in docs:
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc["rules"]:
            sim_rule = {"verbs": rule["verbs"], "apiGroups": rule["apiGroups"],
                        "resources": rule["resources"]}
            if "resourceNames" in rule:
                sim_rule["resourceNames"] = rule["resourceNames"]
            # A Role binds to its namespace. The namespace object itself is the exception
            # kept by name only: Kubernetes authorizes `get namespaces/X` in namespace X,
            # the simulator at the cluster scope.
            if doc["kind"] == "Role" and rule["resources"] != ["namespaces"]:
                sim_rule["namespaces"] = [namespace]
            out.append(sim_rule)
    return out


def access_row(config, cluster, api):
    """The pre-flight's one `access` row (`console.preflight.access.access_check`, what a
    release runs) for `cluster`, asked through the API client `api`."""
    from console.kube.client import KubeClient
    from console.kube.driver import ClusterDriver
    from console.preflight.access import access_check
    from console.preflight.model import ClusterContext
    driver = ClusterDriver(KubeClient(cluster.id, api, 10.0), config.app.name,
                           cluster.namespace, grace=0.5)
    return access_check(ClusterContext(cluster, config, "v1", lambda _cid: driver))


def denials(row) -> list[str]:
    """The permissions an `access` row names as denied."""
    return row.detail.split(": denied: ", 1)[1].split("; ")[0].split(", ")


@pytest.mark.kubectl
def test_kubectl_applies_the_manifests_and_their_rules_pass_the_access_check(tmp_path, sim_fleet):
    """An admin's `kubectl apply`; then a token with the rules the server stored passes."""
    from dataclasses import replace

    from console.kube.client import new_api_client

    config = write_fleet(tmp_path)
    fleet = sim_fleet(["eu"])
    admin = tmp_path / "admin.yaml"
    admin.write_text(yaml.safe_dump(fleet.kubeconfig("eu")))
    applied = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(admin),
         "--cache-dir", str(tmp_path / "kubectl-cache"), "apply", "--server-side", "-f", "-"],
        input=manifests(config.cluster("eu"), config), capture_output=True, text=True,
        timeout=60)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("serverside-applied") == 6
    stored = [fleet.get("eu", "rbac.authorization.k8s.io/roles", "team-eu", "release-console"),
              fleet.get("eu", "rbac.authorization.k8s.io/clusterroles", "",
                        "release-console-node-reader")]
    assert all(stored) and fleet.get("eu", "/namespaces", "", "team-eu")
    token = fleet.add_token("eu", sim_rules(stored, "team-eu"),
                            username="system:serviceaccount:team-eu:release-console")
    limited = new_api_client("eu", fleet.kubeconfig("eu", token))
    row = access_row(config, config.cluster("eu"), limited)
    assert (row.check, row.ok, row.cluster) == ("access", True, "eu")
    assert row.detail == "all 15 permissions granted in namespace 'team-eu'"
    # The same token is refused in another namespace: the Role is not cluster-wide.
    elsewhere = access_row(config, replace(config.cluster("eu"), namespace="other"), limited)
    # All but `list nodes` and `list pods`, which the ClusterRole grants in every namespace.
    assert not elsewhere.ok and len(denials(elsewhere)) == 13, elsewhere.detail


def test_a_token_missing_one_verb_fails_naming_cluster_verb_and_resource(tmp_path, sim_fleet):
    from console.kube.client import new_api_client

    config = write_fleet(tmp_path)
    docs = docs_of(manifests(config.cluster("eu"), config))
    fleet = sim_fleet(["eu"])
    granted = sim_rules(docs, "team-eu")
    deployments = next(r for r in granted if r["resources"] == ["deployments"])
    deployments["verbs"] = [v for v in deployments["verbs"] if v != "delete"]
    granted = [r for r in granted if r["resources"] != ["nodes"]]
    token = fleet.add_token("eu", granted)
    row = access_row(config, config.cluster("eu"),
                     new_api_client("eu", fleet.kubeconfig("eu", token)))
    assert (row.check, row.ok, row.cluster) == ("access", False, "eu")
    assert row.detail.startswith("cluster 'eu': denied: ")
    assert denials(row) == ["delete deployments.apps in namespace 'team-eu'",
                            "list nodes cluster-wide"]
    assert row.detail.endswith("ask an admin to apply `release-console rbac eu`")


def test_a_release_and_its_rollback_run_with_only_these_rules(tmp_path, sim_fleet):
    """The rules are enough for what the engine really does: apply, follow, fail, roll back."""
    from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest

    config = write_fleet(tmp_path)
    fleet = sim_fleet(["eu"], never_pull=["*broken*"])
    create_namespace(fleet, "eu", "team-eu")
    path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=tmp_path / "clusters.yaml")
    token = fleet.add_token("eu", sim_rules(docs_of(manifests(config.cluster("eu"), config)),
                                            "team-eu"))
    (tmp_path / "fleet" / "eu.yaml").write_text(yaml.safe_dump(fleet.kubeconfig("eu", token)))
    engine = Engine(fleet_config.load(path), grace=0.5)
    approve = lambda _gate: GateAnswer(GateDecision.APPROVE, by="test")  # noqa: E731
    try:
        first = engine.run(ReleaseRequest(tag="1.0"), approve)
        checks = {r.check: r.ok for r in first.preflight.results}
        broken = engine.run(ReleaseRequest(tag="1.1-broken"), approve)
    finally:
        engine.close()
    assert first.outcome == "ok", first
    assert checks["access"] and checks["dry-run"] and checks["capacity"], first.preflight.table()
    assert broken.clusters[0].outcome == "rolled_back", broken
    image = fleet.get("eu", "apps/deployments", "team-eu", "shop")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert image.split("@")[0].endswith(":1.0")


def test_pre_flight_shows_every_denial_in_one_row(tmp_path, sim_fleet):
    """Through the engine's pre-flight: one `access` row listing the denials and the fix."""
    from console.engine import Engine, ReleaseRequest

    config = write_fleet(tmp_path)
    fleet = sim_fleet(["eu"])
    create_namespace(fleet, "eu", "team-eu")
    path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=tmp_path / "clusters.yaml")
    granted = [r for r in sim_rules(docs_of(manifests(config.cluster("eu"), config)), "team-eu")
               if r["resources"] not in (["events"], ["replicasets"])]
    (tmp_path / "fleet" / "eu.yaml").write_text(
        yaml.safe_dump(fleet.kubeconfig("eu", fleet.add_token("eu", granted))))
    engine = Engine(fleet_config.load(path))
    try:
        report = engine.preflight(ReleaseRequest(tag="1.0"))
    finally:
        engine.close()
    access = [r for r in report.results if r.check == "access"]
    assert [(r.ok, r.cluster) for r in access] == [(False, "eu")]
    assert access[0].detail == (
        "cluster 'eu': denied: list replicasets.apps in namespace 'team-eu', list events in "
        "namespace 'team-eu'; ask an admin to apply `release-console rbac eu`")
    assert not report.ok
