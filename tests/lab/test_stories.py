"""The release stories on the simulator and on real Kubernetes (issue 12 items 3 and 5).

Each story runs twice through the `stage` fixture: on console/sim and on the lab (real
kube-apiserver, controller-manager, scheduler and KWOK; those cases are marked `real`).
A story that passes on the lab and fails on the simulator is a simulator divergence.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from console.cli import main
from console.engine import GateAnswer, GateDecision, ReleaseRequest
from console.locks import ClusterLease
from tests.lab.conftest import APP, IDS, REPO, tag_of, wait_for

CANARY = {"canary": {"waves": [["c0"], ["c1", "c2"]], "gates": True, "max_failures": 0}}


def deploy(stage, tag, *extra):
    return main(["deploy", "--config", str(stage.config_path), "--tag", tag,
                 "--fail-fast-grace", "0.5", *extra])


def test_first_release_creates_the_namespace_and_applies_the_deployment(stage):
    stage.write()
    result = stage.release("v1")
    assert result.exit_code == 0, (result.outcome, result.message, result.preflight.table())
    for cid in IDS:
        assert stage.fleet.get(cid, "/namespaces", "", stage.ns(cid)) is not None
        assert stage.version(cid) == "v1"
        assert stage.ready_pods(cid, "v1") == 2
        assert stage.deployment(cid)["metadata"]["annotations"]  # the console's release marks


def test_upgrade_through_the_cli(stage, capsys):
    stage.write()
    assert deploy(stage, "v1", "--strategy", "parallel", "--yes") == 0
    assert deploy(stage, "v2", "--strategy", "serial", "--yes") == 0, capsys.readouterr().out
    for cid in IDS:
        assert stage.version(cid) == "v2"
        assert stage.ready_pods(cid, "v2") == 2
        assert stage.deployment(cid)["status"].get("updatedReplicas") == 2


def test_a_never_pulling_image_fails_fast_and_is_rolled_back(stage, capsys):
    stage.write()
    assert deploy(stage, "v1", "--strategy", "parallel", "--yes") == 0
    capsys.readouterr()
    code = deploy(stage, "v2-broken", "--strategy", "parallel", "--yes")
    out = capsys.readouterr().out
    assert code == 1, out
    assert "rolled back to v1" in out
    assert "ErrImagePull" in out or "ImagePullBackOff" in out
    assert [stage.version(cid) for cid in IDS] == ["v1"] * 3
    for cid in IDS:
        wait_for(lambda c=cid: stage.ready_pods(c, "v1") == 2, f"v1 ready again on {cid}")


def test_manual_rollback_of_one_cluster_to_a_named_version(stage, capsys):
    stage.write()
    assert stage.release("v1").exit_code == 0
    assert stage.release("v2").exit_code == 0
    code = main(["rollback", "c1", "--to", "v1", "--yes", "--config", str(stage.config_path)])
    assert code == 0, capsys.readouterr()
    assert [stage.version(cid) for cid in IDS] == ["v2", "v1", "v2"]
    # And back to the previous revision (as `kubectl rollout undo`): v2 again.
    assert main(["rollback", "c1", "--undo", "--yes", "--config", str(stage.config_path)]) == 0
    assert stage.version("c1") == "v2"


def test_rollback_of_a_whole_release(stage, capsys):
    stage.write()
    assert stage.release("v1").exit_code == 0
    second = stage.release("v2", clusters="c0,c1")
    assert second.exit_code == 0
    code = main(["rollback", "--release", second.release_id, "--yes",
                 "--config", str(stage.config_path)])
    assert code == 0, capsys.readouterr()
    assert [stage.version(cid) for cid in IDS] == ["v1"] * 3


def test_a_canary_stopped_at_its_gate_leaves_the_later_waves_alone(stage):
    stage.write(strategies=CANARY)
    assert stage.release("v1").exit_code == 0
    reject = lambda _gate: GateAnswer(GateDecision.REJECT, by="test")  # noqa: E731
    result = stage.release("v2", strategy="canary", approver=reject)
    assert result.exit_code == 3, (result.outcome, result.message)
    assert [stage.version(cid) for cid in IDS] == ["v2", "v1", "v1"]


def test_the_lease_lock_refuses_a_second_release(stage, capsys):
    stage.write()
    assert stage.release("v1").exit_code == 0
    engine = stage.engine()
    try:
        lease = ClusterLease(engine.driver("c1").client.api, "c1", stage.ns("c1"), APP,
                             "bob@far:7/r-elsewhere")
        lease.acquire()
        code = deploy(stage, "v2", "--strategy", "parallel", "--yes", "--json")
        out = capsys.readouterr().out
        assert code == 2, out
        assert "is being released by bob@far" in out and '"lock"' in out
        assert [stage.version(cid) for cid in IDS] == ["v1"] * 3    # nothing touched
        lease.release()
    finally:
        engine.close()


def set_image(stage, cid, tag, cache):
    """`kubectl set image` on one cluster with its kubeconfig, as an operator would."""
    image = f"{stage.fleet.registry_host}/apps/user-service:{tag}"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig",
         str(stage.config_path.parent / f"{cid}.yaml"), "--cache-dir", str(cache),
         "-n", stage.ns(cid), "set", "image", f"deployment/{APP}", f"{APP}={image}"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_drift_after_kubectl_set_image_shows_in_status(stage, capsys, tmp_path):
    stage.write()
    assert deploy(stage, "v1", "--strategy", "parallel", "--yes") == 0   # recorded in the ledger
    set_image(stage, "c2", "hotfix", tmp_path / "kubectl-cache")
    wait_for(lambda: stage.ready_pods("c2", "hotfix") == 2, "the hotfix to roll out")
    capsys.readouterr()
    main(["status", "--json", "--config", str(stage.config_path)])
    doc = json.loads(capsys.readouterr().out)
    assert doc["drift"] == ["c2"], doc
    versions = {c["cluster"]: c["version"] for c in doc["clusters"]}
    assert versions == {"c0": "v1", "c1": "v1", "c2": "hotfix"}


def test_server_dry_run_rejects_an_invalid_manifest_before_anything_changes(stage, tmp_path):
    manifests = tmp_path / "manifests"
    shutil.copytree(REPO / "deploy" / "user-service", manifests)
    deployment = manifests / "deployment.yaml"
    # Valid YAML and a known field, but no container port can be 70000: only the API
    # server's validation knows.
    text = deployment.read_text()
    assert "- containerPort: 8080" in text
    deployment.write_text(text.replace("- containerPort: 8080", "- containerPort: 70000"))
    stage.write()
    assert stage.release("v1").exit_code == 0      # the namespaces exist: dry runs can run
    stage.write(manifests=manifests)
    engine = stage.engine()
    try:
        report = engine.preflight(ReleaseRequest(tag="v2"))
    finally:
        engine.close()
    dry = [r for r in report.results if r.check == "dry-run"]
    assert dry and not any(r.ok for r in dry), report.table()
    assert all("containerPort" in r.detail for r in dry), [r.detail for r in dry]
    assert [stage.version(cid) for cid in IDS] == ["v1"] * 3


def test_status_and_history_tell_what_runs_where(stage, capsys):
    stage.write()
    assert deploy(stage, "v1", "--strategy", "parallel", "--yes") == 0
    assert deploy(stage, "v2", "--clusters", "c0", "--yes") == 0
    capsys.readouterr()
    assert main(["status", "--json", "--config", str(stage.config_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {c["cluster"]: c for c in doc["clusters"]}
    assert {cid: rows[cid]["version"] for cid in IDS} == {"c0": "v2", "c1": "v1", "c2": "v1"}
    assert {cid: rows[cid]["ready"] for cid in IDS} == {"c0": 2, "c1": 2, "c2": 2}
    assert doc["drift"] == []
    assert main(["history", "--json", "--config", str(stage.config_path)]) == 0
    releases = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert sorted(r["version"] for r in releases) == ["v1", "v2"], releases


def test_a_crash_looping_image_fails_and_is_rolled_back(stage):
    stage.write()
    assert stage.release("v1").exit_code == 0
    result = stage.release("v2-crash", clusters="c0")
    assert result.exit_code == 1, (result.outcome, result.message)
    failed = result.clusters[0]
    assert failed.outcome == "rolled_back" and "CrashLoopBackOff" in (failed.error or ""), failed
    assert stage.version("c0") == "v1"


def test_a_serial_release_stops_at_the_first_failure(stage):
    stage.write()
    assert stage.release("v1").exit_code == 0
    result = stage.release("v2-broken", strategy="serial")
    assert result.exit_code == 1
    outcomes = {r.cluster: r.outcome for r in result.clusters}
    assert outcomes["c0"] == "rolled_back", outcomes
    assert all(outcomes.get(cid) in (None, "skipped") for cid in ("c1", "c2")), outcomes
    assert [stage.version(cid) for cid in IDS] == ["v1"] * 3


def test_the_detail_view_shows_pods_revisions_and_the_pull_failure(stage, tmp_path):
    stage.write()
    assert stage.release("v1").exit_code == 0
    engine = stage.engine()
    try:
        # An image that never pulls, set outside a release: the detail names the reason.
        set_image(stage, "c1", "v9-broken", tmp_path / "kubectl-cache")
        wait_for(lambda: any(p.reason in ("ErrImagePull", "ImagePullBackOff")
                             for p in engine.detail("c1").pods), "the pull failure in the detail")
        detail = engine.detail("c1")
    finally:
        engine.close()
    assert {tag_of(p.image) for p in detail.pods} >= {"v1", "v9-broken"}
    assert [r.version for r in detail.revisions][-2:] == ["v1", "v9-broken"], detail.revisions
    broken = {p.name for p in detail.pods if tag_of(p.image) == "v9-broken"}
    # The kubelet's (KWOK's) events about the failing pull, on the failing pods.
    assert any(e.reason in ("Failed", "BackOff") and e.object.rsplit("/", 1)[-1] in broken
               for e in detail.events), detail.events


def test_pre_flight_reads_the_same_on_both(stage):
    stage.write()
    assert stage.release("v1").exit_code == 0
    engine = stage.engine()
    try:
        report = engine.preflight(ReleaseRequest(tag="v2"))
    finally:
        engine.close()
    rows = {(r.cluster, r.check): (r.ok, r.detail) for r in report.results}
    ns = stage.ns("c0")
    assert rows[("c0", "namespace")] == (True, f"{ns} exists")
    assert rows[("c0", "live")] == (True, "runs v1")
    assert rows[("c0", "access")] == (True, f"all 15 permissions granted in namespace '{ns}'")
    assert rows[("c0", "dry-run")] == (True, "1 object(s) accepted (server-side apply, dryRun=All)")
    # Free capacity counts every pod of the cluster: other stories' pods share the lab's.
    ok, capacity = rows[("c0", "capacity")]
    assert ok and capacity.startswith("3 pod(s) fit: cpu 30m of ") and \
        capacity.endswith(" free on 3 node(s)"), capacity
    assert rows[("c0", "cluster")] == (True, f"answers ({stage.fleet.url('c0')})")


def test_a_failed_first_release_leaves_nothing_behind(stage):
    stage.write()
    result = stage.release("v1-broken", clusters="c0")
    assert result.exit_code == 1
    assert result.clusters[0].outcome == "rolled_back", result.clusters
    assert stage.deployment("c0") is None            # the first release's rollback deletes it
    # Its ReplicaSets and pods go too (the garbage collector, in the background on the lab).
    wait_for(lambda: not stage.fleet.list("c0", "apps/replicasets", stage.ns("c0")),
             "the ReplicaSets to be collected")
    wait_for(lambda: not stage.pods("c0"), "the pods to be collected")


def test_a_first_release_of_an_invalid_manifest_fails_with_the_servers_words(stage, capsys):
    """Issue 17: the namespace does not exist yet, and the server still validates."""
    stage.write(replicas="two")    # a string where the API server wants an int32
    code = deploy(stage, "v1", "--clusters", "c0", "--yes")
    out = capsys.readouterr()
    assert code == 2, out
    assert ("cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of "
            "type int32") in out.err + out.out
    assert stage.fleet.get("c0", "/namespaces", "", stage.ns("c0")) is None   # nothing made
    assert stage.deployment("c0") is None


def test_a_release_that_cannot_fit_fails_pre_flight_with_the_numbers(stage, capsys):
    """Issue 17: capacity as the scheduler sees it - no node has 500 cores for a pod."""
    stage.write(cpu="500")
    code = deploy(stage, "v1", "--clusters", "c0", "--yes")
    out = capsys.readouterr()
    text = out.err + out.out
    assert code == 2, text
    assert "the release's pods do not fit: cpu: needs 1000 (2 x 500)" in text, text
    assert stage.fleet.get("c0", "/namespaces", "", stage.ns("c0")) is None


def test_an_apply_on_a_stale_resource_version_changes_nothing(stage):
    """The deploy's rollback target is pre-flight's reading of the Deployment, its
    resourceVersion the apply's precondition: a server-side apply naming a version the
    Deployment no longer has is refused (409) and writes nothing, on both."""
    from console.kube.client import ClusterError
    stage.write()
    assert stage.release("v1", clusters="c0").exit_code == 0
    engine = stage.engine()
    try:
        driver = engine.driver("c0")
        read = driver.live()
        # Someone changes it after that reading (an annotation: a new resourceVersion).
        driver.client.request("PATCH", f"/apis/apps/v1/namespaces/{stage.ns('c0')}/deployments/"
                              f"{APP}", body={"metadata": {"annotations": {"touched": "yes"}}},
                              content_type="application/merge-patch+json")
        try:
            driver.install(driver.prepare("v2"), {}, precondition=read.resource_version)
        except ClusterError as exc:
            assert exc.status == 409, exc
        else:
            raise AssertionError("the stale apply was accepted")
        assert stage.version("c0") == "v1"
        # A fresh reading's version is accepted. The real controller may still write the
        # status between a reading and the apply (a 409 with nothing wrong): read again.
        deadline = time.monotonic() + 60
        while True:
            fresh = driver.live()
            try:
                applied = driver.install(driver.prepare("v2"), {},
                                         precondition=fresh.resource_version)
                break
            except ClusterError as exc:
                if exc.status != 409 or time.monotonic() > deadline:
                    raise
        assert applied["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2")
    finally:
        engine.close()


def test_status_read_in_three_processes_reads_what_one_process_reads(stage, tmp_path):
    """`status` of a big fleet deals its reads over forked processes
    (`console.cli.status_workers`); on real API servers as on the simulator, three
    processes read each cluster once and give what one process gives (a cluster without
    the app included)."""
    from tests.engine.test_status_workers import read
    stage.write()
    assert deploy(stage, "v1", "--clusters", "c0,c1", "--strategy", "parallel", "--yes") == 0
    result = read(stage, tmp_path, 3)
    assert result["spread"] == result["alone"]
    assert [(s["cluster"], s["reachable"], s["version"], s["ready"]) for s in result["spread"]] \
        == [("c0", True, "v1", 2), ("c1", True, "v1", 2), ("c2", True, None, 0)], \
        [s["error"] for s in result["spread"]]
    assert len({pid for pid, _ in result["reads"][:len(IDS)]}) == 3
