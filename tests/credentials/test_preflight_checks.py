"""The pre-flight checks of `console.preflight` one by one, against simulated clusters and
registry."""

from __future__ import annotations

import ssl
import textwrap

import pytest
import httpx
import yaml

from console import config as fleet_config
from console.credentials import resolve
from console.kube.client import new_api_client
from console.preflight.capacity import check_capacity
from console.preflight.manifests import check_dry_run, check_values
from console.preflight.release import check_image
from console.sim import ClusterSpec
from tests.test_rbac import access_row

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: "${app}"}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: "${selector}"}}
  template:
    metadata: {labels: {app: "${app}"}}
    spec:
      initContainers: [{name: init, image: "${image}", resources: {requests: {cpu: 1500m}}}]
      containers:
        - name: "${app}"
          image: "${image}"
          resources: ${resources}
"""


@pytest.fixture()
def fleet_world(tmp_path, sim_fleet):
    """A simulated fleet `ok`, `big`, `bad`, `shape` with a rewritten clusters.yaml."""

    def make(**sim):
        (tmp_path / "deploy").mkdir(exist_ok=True)
        (tmp_path / "deploy" / "deployment.yaml").write_text(DEPLOYMENT)
        (tmp_path / "clusters.yaml").write_text(textwrap.dedent("""\
            app: {name: shop, image: registry.example.com/apps/shop, manifests: deploy}
            defaults:
              values:
                replicas: 2
                selector: shop
                resources: {requests: {cpu: 500m, memory: 256Mi}, limits: {cpu: "1", memory: 512Mi}}
                tier: web
            clusters:
              - {id: ok, credentials: {kubeconfig: x, server: "https://example:6443"}}
              - id: big
                credentials: {kubeconfig: x}
                values: {resources: {requests: {cpu: "6", memory: 1Gi}, limits: {cpu: "8", memory: 2Gi}}}
              - id: bad
                credentials: {kubeconfig: x}
                values: {selector: other, replicas: -1,
                         resources: {requests: {cpu: "2"}, limits: {cpu: "1", memory: lots}}}
              - {id: shape, credentials: {kubeconfig: x}, values: {resources: none}}
            """))
        fleet = sim_fleet([ClusterSpec("ok"), ClusterSpec("big", {"node_cpu": "4"}), "bad", "shape"],
                          **sim)
        path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=tmp_path / "clusters.yaml")
        config = fleet_config.load(path)
        return fleet, config

    return make


def api_for(config, cid):
    return new_api_client(cid, resolve(config.cluster(cid), config))


def create_namespace(fleet, cid, name):
    """Create a namespace as the cluster admin (plain HTTPS, as kubectl create would)."""
    answer = httpx.post(f"{fleet.url(cid)}/api/v1/namespaces", timeout=5,
                        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                        headers={"Authorization": f"Bearer {fleet.admin_token(cid)}"},
                        verify=ssl.create_default_context(cafile=str(fleet.ca_file)))
    assert answer.status_code == 201, answer.text


def test_image_check_on_the_simulated_registry(fleet_world):
    fleet, config = fleet_world(registry_missing=["*missing*"])
    found = check_image(config, "1.4.2")
    assert found.ok and found.check == "image" and found.cluster is None
    assert f"{fleet.registry_host}/apps/shop:1.4.2 exists (sha256:" in found.detail
    missing = check_image(config, "1.4.3-missing")
    assert not missing.ok and missing.detail.endswith("not found in the registry")
    bad_tag = check_image(config, "-bad")
    assert not bad_tag.ok and "not a valid image tag" in bad_tag.detail


def test_dry_run_also_on_a_first_release(fleet_world):
    fleet, config = fleet_world()
    first = check_dry_run(api_for(config, "ok"), config, config.cluster("ok"), "1.0")
    assert first.ok and first.detail == ("1 object(s) accepted (first release: created as a dry "
                                         "run in namespace 'default')")
    assert fleet.get("ok", "/namespaces", "", "ok") is None      # nothing was created
    create_namespace(fleet, "ok", "ok")
    accepted = check_dry_run(api_for(config, "ok"), config, config.cluster("ok"), "1.0")
    assert accepted.ok and accepted.detail == ("1 object(s) accepted (server-side apply, "
                                               "dryRun=All)")
    # Dry run: nothing was stored.
    assert fleet.get("ok", "apps/deployments", "ok", "shop") is None
    # `bad`'s selector does not match its labels: refused with or without its namespace.
    refused_first = check_dry_run(api_for(config, "bad"), config, config.cluster("bad"), "1.0")
    assert not refused_first.ok and "first release: dry-run in namespace 'default'" in \
        refused_first.detail and "selector` does not match template `labels`" in \
        refused_first.detail
    create_namespace(fleet, "bad", "bad")
    refused = check_dry_run(api_for(config, "bad"), config, config.cluster("bad"), "1.0")
    assert not refused.ok and refused.cluster == "bad"
    assert "the API server refused the manifests" in refused.detail
    assert "selector" in refused.detail


def test_dry_run_refuses_a_kind_the_console_does_not_deploy_before_asking(fleet_world):
    _, config = fleet_world()
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"}}
    refused = check_dry_run(api_for(config, "ok"), config, config.cluster("ok"), "1.0",
                            [job], namespace_exists=True)
    assert not refused.ok and refused.cluster == "ok"
    assert refused.detail == "kind 'Job' (batch/v1) is not one the console deploys"


def test_capacity_counts_replicas_surge_and_init_containers(fleet_world):
    fleet, config = fleet_world()
    # A pod requests its 1500m init container (more than its 500m app container); 2
    # replicas, plus one surge pod when the app already runs.
    fits = check_capacity(api_for(config, "ok"), config, config.cluster("ok"), "1.0")
    assert fits.ok and fits.detail == ("3 pod(s) fit: cpu 4.5 of 12 free, memory 768Mi of 48Gi "
                                       "free on 3 node(s)")
    first = check_capacity(api_for(config, "ok"), config, config.cluster("ok"), "1.0",
                           running=False)
    assert first.ok and first.detail.startswith("2 pod(s) fit: cpu 3 of 12 free")
    too_big = check_capacity(api_for(config, "big"), config, config.cluster("big"), "1.0")
    assert not too_big.ok and too_big.detail == (
        "cluster 'big': the release's pods do not fit: cpu: needs 18 (3 x 6) but 12 is free of "
        "12 allocatable on 3 node(s)")
    # Enough in total, but no node holds a 6-CPU pod.
    per_node = check_capacity(api_for(config, "big"), config, config.cluster("big"), "1.0",
                              running=False)
    assert not per_node.ok and per_node.detail == (
        "cluster 'big': the release's pods do not fit: per node: Deployment shop's pod 1 of 2 "
        "fits on no node (cpu: needs 6 on one node, the most free on one node is 4)")
    fleet.set_faults("big", node_cpu="8")
    assert check_capacity(api_for(config, "big"), config, config.cluster("big"), "1.0").ok
    # Fewer nodes, less room: the count follows the cluster.
    fleet.set_faults("ok", nodes=1, node_cpu="4")
    assert "on 1 node(s)" in check_capacity(api_for(config, "ok"), config,
                                            config.cluster("ok"), "1.0").detail


def test_values_conflicts_per_cluster(fleet_world):
    _, config = fleet_world()
    ok = check_values(config, config.cluster("ok"), "1.0")
    assert ok.ok and ok.detail.endswith("not used by any template: tier")
    bad = check_values(config, config.cluster("bad"), "1.0")
    assert not bad.ok and bad.detail.startswith("cluster 'bad': ")
    assert "Deployment shop: replicas must be a whole number >= 0, got -1" in bad.detail
    assert "cpu request 2 exceeds its limit 1" in bad.detail
    assert "memory 'lots' is not a Kubernetes quantity" in bad.detail
    shape = check_values(config, config.cluster("shape"), "1.0")
    assert not shape.ok
    assert "values.resources is a str here but a dict in defaults.values" in shape.detail


def test_the_rewritten_kubeconfig_still_honours_the_server_pin(fleet_world):
    """`ok` pins its server: the simulator rewrote the pin to itself, and resolve accepts it."""
    fleet, config = fleet_world()
    assert config.cluster("ok").credentials.server == fleet.url("ok")
    kubeconfig = resolve(config.cluster("ok"), config)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == fleet.url("ok")
    assert yaml.safe_dump(kubeconfig)   # plain data, ready for the client


def test_checks_ride_out_a_flaky_cluster(fleet_world):
    """10% of API calls answer 500 (the demo's prod-ap): bounded retries keep the checks green."""
    fleet, config = fleet_world(seed=1021)
    create_namespace(fleet, "ok", "ok")
    fleet.set_faults("ok", error_rate=0.1, error_codes=[500])
    api = api_for(config, "ok")
    for _ in range(5):
        cluster = config.cluster("ok")
        assert access_row(config, cluster, api).ok
        assert check_values(config, cluster, "1.0").ok
        assert check_dry_run(api, config, cluster, "1.0").ok
        assert check_capacity(api, config, cluster, "1.0").ok
    assert fleet.counters("ok")["injected_errors"] > 0
