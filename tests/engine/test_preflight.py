"""Pre-flight stories through the CLI and the engine on a simulated fleet: capacity as the
scheduler sees it, a server-side dry run on a first release, one line for a cluster without
credentials, and few requests per cluster."""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import httpx
import yaml

from console.cli import main
from console.config import load
from console.engine import Engine, ReleaseRequest
from console.sim import ClusterSpec


def with_values(w, **values):
    """Rewrite the world's fleet file with other default values; reload it."""
    doc = yaml.safe_load(w.config_path.read_text())
    doc["defaults"]["values"].update(values)
    w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    w.config = load(w.config_path)
    return w


def check_json(w, capsys, tag="v1"):
    code = main(["check", "--config", str(w.config_path), "--tag", tag, "--json"])
    return code, json.loads(capsys.readouterr().out)


def dry_run(w, tag: str) -> tuple[Any, Any]:
    """Pre-flight of `tag` on `w` (an engine closed after); (report, its dry-run result)."""
    engine = Engine(w.config)
    try:
        report = engine.preflight(ReleaseRequest(tag=tag))
    finally:
        engine.close()
    return report, next(r for r in report.results if r.check == "dry-run")


def place_pod(fleet, cid, namespace, name, cpu):
    """A pod of another team, placed on a node by the simulator's scheduler (waited for)."""
    base = fleet.url(cid)
    headers = {"Authorization": f"Bearer {fleet.admin_token(cid)}"}
    verify = ssl.create_default_context(cafile=str(fleet.ca_file))
    httpx.post(f"{base}/api/v1/namespaces", headers=headers, verify=verify, timeout=5,
               json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    answer = httpx.post(f"{base}/api/v1/namespaces/{namespace}/pods", headers=headers,
                        verify=verify, timeout=5, json={
                            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                            "spec": {"containers": [{"name": "c", "image": "busybox:1",
                                                     "resources": {"requests": {"cpu": cpu}}}]}})
    assert answer.status_code == 201, answer.text
    deadline = time.monotonic() + 30
    while not (fleet.get(cid, "/pods", namespace, name) or {}).get("spec", {}).get("nodeName"):
        assert time.monotonic() < deadline, "the simulator never placed the pod"
        time.sleep(0.05)


def test_a_release_that_needs_more_cpu_than_is_free_fails_one_replica_fewer_passes(world, capsys):
    # Two nodes of 1 CPU; another team's pod holds 600m of one of them: 1.4 CPU free.
    w = world([ClusterSpec("a", {"nodes": 2, "node_cpu": "1"})], replicas=4)
    with_values(w, resources={"requests": {"cpu": "400m", "memory": "64Mi"}})
    place_pod(w.fleet, "a", "other-team", "batch", "600m")
    code, report = check_json(w, capsys)
    assert code == 2
    failed = [r for r in report["results"] if not r["ok"]]
    assert [(r["cluster"], r["check"]) for r in failed] == [("a", "capacity")]
    assert failed[0]["detail"] == (
        "cluster 'a': the release's pods do not fit: cpu: needs 1.6 (4 x 400m) but 1.4 is free "
        "of 2 allocatable on 2 node(s)")
    with_values(w, replicas=3)
    code, report = check_json(w, capsys)
    assert code == 0, report
    capacity = next(r for r in report["results"] if r["check"] == "capacity")
    assert capacity["detail"].startswith("3 pod(s) fit: cpu 1.2 of 1.4 free")


def test_pods_that_fit_in_total_but_not_node_by_node_fail_per_node(world, capsys):
    w = world([ClusterSpec("a", {"nodes": 2, "node_cpu": "1"})], replicas=2)
    with_values(w, resources={"requests": {"cpu": "700m", "memory": "64Mi"}})
    place_pod(w.fleet, "a", "other-team", "batch", "600m")
    code, report = check_json(w, capsys)
    detail = next(r["detail"] for r in report["results"] if r["check"] == "capacity")
    assert code == 2
    assert detail.startswith("cluster 'a': the release's pods do not fit: per node: "
                             "Deployment user-service's pod 2 of 2 fits on no node (cpu: needs "
                             "700m on one node, the most free on one node is 400m)")


def test_an_update_counts_the_rollouts_surge(world, capsys):
    # 4 CPU on one node; 3 replicas of 1 CPU run. The update surges one more pod (25% of 3,
    # rounded up): 4 pods at once fit; with 4 replicas (4 + 1) they do not.
    w = world([ClusterSpec("a", {"nodes": 1, "node_cpu": "4"})], replicas=3)
    with_values(w, resources={"requests": {"cpu": "1", "memory": "64Mi"}})
    w.deploy_everywhere("v1")
    code, report = check_json(w, capsys, "v2")
    assert code == 0, report
    with_values(w, replicas=4)
    code, report = check_json(w, capsys, "v2")
    detail = next(r["detail"] for r in report["results"] if r["check"] == "capacity")
    assert code == 2 and "cpu: needs 5 (5 x 1) but 4 is free of 4 allocatable" in detail


def test_a_first_release_of_an_invalid_manifest_fails_with_the_servers_message(world, capsys):
    w = world(["a"])
    with_values(w, replicas="two")     # a string where the API server wants an int32
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--yes"])
    err = capsys.readouterr().err
    assert code == 2
    assert ('dry-run      FAIL    the API server refused the manifests (first release: dry-run '
            "in namespace 'default', as namespace 'a' does not exist yet): API error 400: "
            'Deployment in version "v1" cannot be handled as a Deployment: json: cannot '
            "unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
            ) in err
    assert w.fleet.get("a", "/namespaces", "", "a") is None          # nothing was created
    assert w.fleet.list("a", "apps/deployments", "default") == []


def test_a_first_release_is_validated_by_the_server_and_creates_nothing(world):
    w = world(["a"])
    report, dry = dry_run(w, "v1")
    assert report.ok and dry.detail == ("1 object(s) accepted (first release: created as a dry "
                                        "run in namespace 'default')")
    assert w.fleet.counters("a")["by_verb_resource"].get("create deployments") == 1
    assert w.fleet.get("a", "/namespaces", "", "a") is None
    assert w.fleet.list("a", "apps/deployments", "default") == []


def test_an_invalid_manifest_where_the_namespace_exists_fails_with_the_servers_message(world):
    w = world(["a"])
    w.deploy_everywhere("v1")
    with_values(w, replicas="two")
    _report, dry = dry_run(w, "v2")
    assert not dry.ok and dry.detail == (
        "the API server refused the manifests: API error 500: failed to create typed patch "
        "object (a/user-service; apps/v1, Kind=Deployment): .spec.replicas: expected numeric "
        "(int or float), got string")


def test_a_missing_kubeconfig_is_one_credentials_line_naming_both_files(world, capsys):
    w = world(["a", "b"])
    missing = w.config_path.parent / "b.yaml"
    missing.unlink()
    code, report = check_json(w, capsys)
    assert code == 2
    lines = [r for r in report["results"] if r["cluster"] == "b"]
    assert len(lines) == 1 and lines[0]["check"] == "credentials" and not lines[0]["ok"]
    assert lines[0]["detail"] == (f"cluster 'b': credentials from kubeconfig {missing}: file not "
                                  f"found (cluster 'b' of {w.config.source})")
    assert str(w.config_path.name) in lines[0]["detail"]
    assert all(r["ok"] for r in report["results"] if r["cluster"] == "a")


def test_preflight_asks_each_cluster_at_most_six_requests_and_five_where_the_app_runs(
        world):
    w = world(["a", "b"])

    def requests_of_one_preflight(tag):
        before = {c: w.fleet.counters(c)["total"] for c in ("a", "b")}
        engine = Engine(w.config)
        try:
            assert engine.preflight(ReleaseRequest(tag=tag)).ok
        finally:
            engine.close()
        return [w.fleet.counters(c)["total"] - before[c] for c in ("a", "b")]

    # A first release: the Deployment read finds none, so the namespace is read too.
    assert requests_of_one_preflight("v1") == [6, 6]
    w.deploy_everywhere("v1")
    namespace_reads = w.fleet.counters("a")["by_verb_resource"].get("get namespaces", 0)
    # Where the app runs, its Deployment's read also proves the namespace and the cluster
    # answer: no namespace read (it was 6, the namespace read as the probe).
    assert requests_of_one_preflight("v2") == [5, 5]
    assert w.fleet.counters("a")["by_verb_resource"].get("get namespaces", 0) == namespace_reads
    assert "create selfsubjectaccessreviews" not in w.fleet.counters("a")["by_verb_resource"]
