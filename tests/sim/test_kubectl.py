"""Real kubectl against the simulator: the calls a release makes, as kubectl 1.37 and the
system's kubectl (1.32 via the dispatcher) send them."""

from __future__ import annotations

import re

import pytest

from tests.sim.conftest import deployment_yaml, kubectl_binaries

pytestmark = [pytest.mark.kubectl, pytest.mark.parametrize("binary", kubectl_binaries())]


def test_release_flow(binary, sim_fleet, make_kubectl, tmp_path):
    fleet = sim_fleet(["a"], readiness_delay=0.2, jitter=0.1)
    k = make_kubectl(binary, fleet, "a")

    version = k("version").stdout
    assert re.search(r"Server Version: v1\.32\.", version), version

    assert re.search(r"^default\s+Active", k("get", "ns").stdout, re.M)
    assert "namespace/shop created" in k("create", "namespace", "shop").stdout
    assert re.search(r"^shop\s+Active", k("get", "ns").stdout, re.M)

    manifest = tmp_path / "web.yaml"
    manifest.write_text(deployment_yaml("registry.example.com/web:v1"))
    assert "serverside-applied" in k("apply", "--server-side", "-f", str(manifest)).stdout
    k("-n", "shop", "rollout", "status", "deployment/web", "--timeout=30s")
    assert re.search(r"^web\s+3/3\s+3\s+3\s", k("-n", "shop", "get", "deploy").stdout, re.M)

    assert "image updated" in k("-n", "shop", "set", "image", "deployment/web",
                                "web=registry.example.com/web:v2").stdout
    out = k("-n", "shop", "rollout", "status", "deployment/web", "--timeout=30s").stdout
    assert 'deployment "web" successfully rolled out' in out
    image = k("-n", "shop", "get", "deploy", "web", "-o",
              "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == "registry.example.com/web:v2"

    k("-n", "shop", "annotate", "deployment/web", "kubernetes.io/change-cause=ship v2")
    history = k("-n", "shop", "rollout", "history", "deployment/web").stdout
    assert re.findall(r"^(\d+)\s", history, re.M) == ["1", "2"], history
    assert re.search(r"^2\s+ship v2$", history, re.M), history

    assert "rolled back" in k("-n", "shop", "rollout", "undo", "deployment/web").stdout
    k("-n", "shop", "rollout", "status", "deployment/web", "--timeout=30s")
    image = k("-n", "shop", "get", "deploy", "web", "-o",
              "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == "registry.example.com/web:v1"
    history = k("-n", "shop", "rollout", "history", "deployment/web").stdout
    assert re.findall(r"^(\d+)\s", history, re.M) == ["2", "3"], history
    # the undo re-used the first ReplicaSet: still two, the v1 one now at revision 3
    rs = k("-n", "shop", "get", "rs", "-o",
           "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
           "={.spec.template.spec.containers[0].image}{\"\\n\"}{end}").stdout.split()
    assert sorted(rs) == ["2=registry.example.com/web:v2", "3=registry.example.com/web:v1"]

    # re-applying the same manifest changes nothing: no new generation, no new revision
    generation = k("-n", "shop", "get", "deploy", "web", "-o", "jsonpath={.metadata.generation}").stdout
    k("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    assert k("-n", "shop", "get", "deploy", "web", "-o",
             "jsonpath={.metadata.generation}").stdout == generation


def test_progress_deadline_for_a_tag_that_never_pulls(binary, sim_fleet, make_kubectl, tmp_path):
    fleet = sim_fleet(["a"], readiness_delay=0.2, jitter=0.1, never_pull=["*broken*"])
    k = make_kubectl(binary, fleet, "a")
    k("create", "namespace", "shop")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(deployment_yaml("registry.example.com/web:v1", deadline=2))
    k("apply", "--server-side", "-f", str(manifest))
    k("-n", "shop", "rollout", "status", "deployment/web", "--timeout=30s")
    k("-n", "shop", "set", "image", "deployment/web", "web=registry.example.com/web:v2-broken")
    failed = k("-n", "shop", "rollout", "status", "deployment/web", "--timeout=30s", check=False)
    assert failed.returncode == 1
    assert 'deployment "web" exceeded its progress deadline' in failed.stderr
    pods = k("-n", "shop", "get", "pods").stdout
    assert re.search(r"(ErrImagePull|ImagePullBackOff)", pods), pods
    # the old pods keep serving: maxUnavailable 25% of 3 rounds down to 0
    assert len(re.findall(r"\s1/1\s+Running", pods)) == 3, pods


def test_auth_can_i_with_a_limited_token(binary, sim_fleet, make_kubectl):
    fleet = sim_fleet(["a"])
    token = fleet.add_token("a", [{"verbs": ["get", "list", "watch", "patch"], "apiGroups": ["apps"],
                                   "resources": ["deployments"], "namespaces": ["shop"]}])
    k = make_kubectl(binary, fleet, "a", token)
    yes = k("auth", "can-i", "patch", "deployments", "-n", "shop", check=False)
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes")
    no = k("auth", "can-i", "delete", "deployments", "-n", "shop", check=False)
    assert (no.returncode, no.stdout.strip()) == (1, "no")
    other_ns = k("auth", "can-i", "patch", "deployments", "-n", "default", check=False)
    assert other_ns.stdout.strip() == "no"
    forbidden = k("-n", "default", "get", "deploy", check=False)
    assert forbidden.returncode == 1 and "forbidden" in forbidden.stderr


def test_auth_can_i_list_reads_the_tokens_rules(binary, sim_fleet, make_kubectl):
    """`kubectl auth can-i --list` sends a SelfSubjectRulesReview: the rules of the namespace."""
    fleet = sim_fleet(["a"])
    token = fleet.add_token("a", [
        {"verbs": ["get", "patch"], "apiGroups": ["apps"], "resources": ["deployments"],
         "namespaces": ["shop"]},
        {"verbs": ["list"], "apiGroups": [""], "resources": ["nodes"]}])
    k = make_kubectl(binary, fleet, "a", token)
    shop = k("auth", "can-i", "--list", "-n", "shop").stdout
    assert re.search(r"^deployments\.apps\s+\[\]\s+\[\]\s+\[get patch\]$", shop, re.M), shop
    assert re.search(r"^nodes\s+\[\]\s+\[\]\s+\[list\]$", shop, re.M), shop
    assert "selfsubjectrulesreviews.authorization.k8s.io" in shop
    elsewhere = k("auth", "can-i", "--list", "-n", "other").stdout
    assert "deployments.apps" not in elsewhere and "nodes" in elsewhere


def test_another_clusters_token_is_unauthorized(binary, sim_fleet, make_kubectl):
    fleet = sim_fleet(["a", "b"])
    k = make_kubectl(binary, fleet, "a", fleet.admin_token("b"))
    out = k("get", "ns", check=False)
    assert out.returncode == 1
    assert "You must be logged in to the server" in out.stderr


def test_generators_send_protobuf_and_nothing_is_dropped(binary, sim_fleet, make_kubectl):
    fleet = sim_fleet(["a"])
    k = make_kubectl(binary, fleet, "a")
    k("create", "role", "reader", "--verb=get,list", "--resource=pods,deployments.apps")
    rules = fleet.get("a", "rbac.authorization.k8s.io/roles", "default", "reader")["rules"]
    assert rules == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
                     {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"]}]
    k("create", "configmap", "settings", "--from-literal=mode=fast")
    assert fleet.get("a", "/configmaps", "default", "settings")["data"] == {"mode": "fast"}
    k("create", "deployment", "web", "--image=reg.example/app:v1", "--replicas=2", "--port=8080")
    spec = fleet.get("a", "apps/deployments", "default", "web")["spec"]
    assert spec["replicas"] == 2 and spec["selector"] == {"matchLabels": {"app": "web"}}
    container = spec["template"]["spec"]["containers"][0]
    assert (container["image"], container["ports"]) == ("reg.example/app:v1", [{"containerPort": 8080,
                                                                                "protocol": "TCP"}])
    k("rollout", "status", "deployment/web", "--timeout=30s")
    # a kind the decoder does not know is refused, never created half-empty
    refused = k("create", "service", "clusterip", "web", "--tcp=80:8080", check=False)
    assert refused.returncode == 1 and "cannot decode a protobuf Service" in refused.stderr
