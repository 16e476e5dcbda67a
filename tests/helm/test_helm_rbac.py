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


def grant(fleet, path, cid: str, rules: list[dict]) -> None:
    """Cluster `cid`'s kubeconfig beside the fleet file `path` now holds a token that
    has only `rules` (simulator token rules)."""
    token = fleet.add_token(cid, rules)
    (path.parent / f"{cid}.yaml").write_text(yaml.safe_dump(fleet.kubeconfig(cid, token)))


def release(path, **request):
    """A release (the `ReleaseRequest` fields given) on the fleet file at `path` as it is
    now, by an engine closed after."""
    engine = Engine(load(path), grace=0.5)
    try:
        return engine.run(ReleaseRequest(**request), approve)
    finally:
        engine.close()


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


SERVICE = """{{- if .Values.service }}
apiVersion: v1
kind: Service
metadata:
  name: {{ .Chart.Name }}
  namespace: {{ .Release.Namespace }}
spec:
  selector:
    app: {{ .Chart.Name }}
  ports:
    - port: 80
      targetPort: {{ .Values.containerPort }}
{{- end }}
"""


def custom_chart(sim_fleet, tmp_path, templates: dict[str, str],
                 values: dict[str, dict] | None = None, storage: str | None = None):
    """Clusters a and b shipping a copy of the example chart with more `templates`, each
    cluster with its own `values`; (fleet, fleet file path)."""
    import shutil

    from .conftest import CHART, chart_fleet_file
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    for name, text in templates.items():
        (chart / "templates" / name).write_text(text)
    fleet = sim_fleet(["a", "b"], readiness_delay=0.2, jitter=0.1)
    source = chart_fleet_file(tmp_path, ["a", "b"], storage=storage)
    doc = yaml.safe_load(source.read_text())
    doc["app"]["chart"] = str(chart)
    for cluster in doc["clusters"]:
        if (values or {}).get(cluster["id"]):
            cluster["values"] = values[cluster["id"]]
    source.write_text(yaml.safe_dump(doc, sort_keys=False))
    return fleet, fleet.write_kubeconfigs(tmp_path / "fleet", config_path=source)


@pytest.fixture
def service_on_b(sim_fleet, tmp_path, helm):
    """The chart renders a Service only where `values.service` is true: on b (its own
    `values`), not on a."""
    return custom_chart(sim_fleet, tmp_path, {"service.yaml": SERVICE},
                        {"b": {"service": True}})


def test_rbac_renders_the_chart_with_the_clusters_own_values(service_on_b, capsys):
    from console.cli import main
    _, path = service_on_b
    printed = {}
    for cid in ("a", "b"):
        assert main(["rbac", cid, "--config", str(path)]) == 0
        printed[cid] = {res for r in role_rules(capsys.readouterr().out)
                        for res in r["resources"]}
    assert "services" in printed["b"] and "services" not in printed["a"]


def test_a_kind_only_one_cluster_renders_gets_its_rights_there_and_preflight_asks(
        service_on_b):
    fleet, path = service_on_b
    config = load(path)
    for cid in ("a", "b"):
        create_namespace(fleet, cid)
    # b's admin applied `rbac b` as it printed before it rendered b's own values (no
    # Service rights): pre-flight must refuse b, naming the missing Service rights.
    grant(fleet, path, "b", [r for r in sim_rules(manifests(config.cluster("b"), config), "b")
                             if r["resources"] != ["services"]])
    refused = release(path, tag="1.0", strategy="parallel")
    access = {r.cluster: r for r in refused.preflight.results if r.check == "access"}
    assert access["a"].ok and not access["b"].ok, refused.preflight.table()
    assert "create services in namespace 'b'" in access["b"].detail
    assert fleet.get("b", "/services", "b", "user-service") is None

    # With what `rbac b` prints, the release creates b's Service (and a has none).
    for cid in ("a", "b"):
        grant(fleet, path, cid, sim_rules(manifests(config.cluster(cid), config), cid))
    result = release(path, tag="1.0", strategy="parallel")
    assert result.outcome == "ok", result.preflight.table() if result.preflight else result
    assert fleet.get("b", "/services", "b", "user-service") is not None
    assert fleet.get("a", "/services", "a", "user-service") is None


SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: {{ .Chart.Name }}-settings
  namespace: {{ .Release.Namespace }}
stringData:
  level: info
"""


def test_configmap_storage_with_a_chart_secret_says_which_secret_rights_and_why(
        sim_fleet, tmp_path, helm):
    fleet, path = custom_chart(sim_fleet, tmp_path, {"secret.yaml": SECRET},
                               storage="configmap")
    config = load(path)
    text = manifests(config.cluster("a"), config)
    secrets = [r for r in role_rules(text) if r["resources"] == ["secrets"]]
    assert [set(r["verbs"]) for r in secrets] == [{"get", "create", "patch", "delete"}]
    # Neither the header nor the ConfigMap rule's comment may say no Secret access.
    assert "no access to Secrets" not in text
    header = text.split("\n---\n")[0]
    assert "the chart renders a Secret" in header
    assert "get, create, patch and delete on Secrets" in header
    assert "read EVERY Secret in namespace 'a'" in header
    # And those rights are enough: a release to a with only the printed rules.
    create_namespace(fleet, "a")
    grant(fleet, path, "a", sim_rules(text, "a"))
    result = release(path, tag="1.0", clusters="a")
    assert result.outcome == "ok", result.preflight.table() if result.preflight else result
    assert fleet.get("a", "/secrets", "a", "user-service-settings") is not None
