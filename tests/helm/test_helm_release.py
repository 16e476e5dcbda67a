"""The Helm driver's story on the simulator, with the real helm binary: a canary release of
the example chart adds one Helm revision per cluster, a tag that never pulls is undone by
`helm rollback`, a manual rollback lands on the revision that ran the version, a failed
first install is uninstalled, and `status` shows the chart and the revision."""

from __future__ import annotations

import pytest

from console.events import Kind

CANARY = {"canary": {"waves": [["h1"], ["h2"], ["h3"]], "gates": True}}


def revisions_with_tags(world, cid):
    """[(revision, status, tag)] from `helm history` and `helm get values`."""
    out = []
    for entry in world.history(cid):
        tag = world.values(cid, entry["revision"]).get("image", {}).get("tag")
        out.append((entry["revision"], entry["status"], tag))
    return out


@pytest.mark.parametrize("storage", ["secret", "configmap"])
def test_canary_release_adds_one_helm_revision_with_the_new_tag(helm_world, storage):
    w = helm_world(["h1", "h2", "h3"], storage=storage, strategies=CANARY)
    first = w.release("v1", strategy="parallel")
    assert first.exit_code == 0, first
    result = w.release("v2", strategy="canary")
    assert result.exit_code == 0, (result.message, result.clusters)
    for cid in ("h1", "h2", "h3"):
        assert revisions_with_tags(w, cid) == [(1, "superseded", "v1"), (2, "deployed", "v2")]
        assert w.version(cid) == "v2"
        # The console's annotations sit on the Deployment Helm wrote.
        dep = w.fleet.get(cid, "apps/deployments", cid, "user-service")
        annotations = dep["metadata"]["annotations"]
        assert annotations["release-console.io/version"] == "v2"
        assert annotations["release-console.io/previous-version"] == "v1"
        assert annotations["meta.helm.sh/release-name"] == "user-service"
        # Values: the fleet file's merged values, the set-strings, no credentials.
        values = w.values(cid, 2)
        assert values["cluster"] == cid and values["replicas"] == 2
        # Pinned: image.tag stays the tag, the digest the release resolved is image.digest,
        # and the chart makes the image repository:tag@digest (issue 14 item 3).
        digest = result.clusters[0].digest
        assert digest and digest.startswith("sha256:")
        assert (values["image"]["tag"], values["image"]["digest"]) == ("v2", digest)
        assert w.image(cid).endswith(f":v2@{digest}")
        assert values["resources"]["limits"] == {"cpu": "200m", "memory": "64Mi"}
    # Helm stored its records the way the fleet file said.
    kind = "/secrets" if storage == "secret" else "/configmaps"
    names = {o["metadata"]["name"] for o in w.fleet.list("h1", kind, "h1")}
    assert {"sh.helm.release.v1.user-service.v1", "sh.helm.release.v1.user-service.v2"} <= names


def test_a_never_pulling_tag_is_rolled_back_by_helm_rollback(helm_world):
    w = helm_world(["h1", "h2"])
    assert w.release("v1").exit_code == 0
    w.fleet.set_faults("h2", never_pull=["v2"])
    result = w.release("v2")
    assert result.exit_code == 1
    by_cluster = {r.cluster: r for r in result.clusters}
    assert by_cluster["h1"].outcome == "healthy"
    assert by_cluster["h2"].outcome == "rolled_back"
    assert "ErrImagePull" in by_cluster["h2"].error or "ImagePullBackOff" in by_cluster["h2"].error
    # One more revision on top of the failed one: Helm's rollback to revision 1, old tag.
    history = w.history("h2")
    assert [h["revision"] for h in history] == [1, 2, 3]
    assert history[-1]["status"] == "deployed"
    assert history[-1]["description"] == "Rollback to 1"
    assert w.values("h2", 3)["image"]["tag"] == "v1"
    assert w.version("h2") == "v1"
    rolled = [e for e in w.recorder.events
              if e.kind is Kind.CLUSTER_ROLLED_BACK and e.cluster == "h2"]
    assert rolled and rolled[-1].data["ok"] is True


def test_manual_rollback_to_a_version_lands_on_its_helm_revision(helm_world):
    w = helm_world(["h1"])
    for tag in ("v1", "v2", "v3"):
        assert w.release(tag).exit_code == 0
    engine = w.engine()
    try:
        result = engine.rollback("h1", "v1", by="test")
        assert result.outcome == "rolled_back", result
        history = w.history("h1")
        assert history[-1]["revision"] == 4 and history[-1]["description"] == "Rollback to 1"
        assert w.version("h1") == "v1"
        # The previous-revision rollback (no --to) goes to what ran before: v3 at revision 3.
        again = engine.rollback("h1", by="test")
        assert again.outcome == "rolled_back" and again.rolled_back_to == "v3"
        assert w.history("h1")[-1]["description"] == "Rollback to 3"
        status = {s.cluster: s for s in engine.status()}
        assert status["h1"].helm_revision == 5
        assert status["h1"].chart_version == "0.1.0"
        assert status["h1"].helm_status == "deployed"
        assert status["h1"].version == "v3"
    finally:
        engine.close()


def test_a_failed_first_install_is_uninstalled(helm_world):
    w = helm_world(["h1"])
    w.fleet.set_faults("h1", never_pull=["v1"])
    result = w.release("v1")
    assert result.exit_code == 1
    assert result.clusters[0].outcome == "rolled_back"
    assert w.fleet.get("h1", "apps/deployments", "h1", "user-service") is None
    # Helm's records are gone with it: the next release is a fresh install.
    assert not [s for s in w.fleet.list("h1", "/secrets", "h1")
                if s["metadata"]["name"].startswith("sh.helm.release.v1.")]



def test_uninstalling_nothing_is_fine_but_any_other_helm_error_is_raised(helm_world):
    """`helm uninstall --ignore-not-found`: only a release that is not there counts as
    uninstalled - an error that merely says "not found" (here a credential helper that is
    not installed, whose kubeconfig hint helm prints last) is the cluster's error, never
    swallowed as "already gone". (A missing namespace is a release not found: no error.)"""
    from console.kube.client import ClusterError
    from console.kube.helm import HelmDriver

    w = helm_world(["h1"])
    engine = w.engine()
    try:
        driver = engine.build_driver("h1")
        driver.uninstall()      # never installed: nothing to do, no error
        HelmDriver(driver.client, "user-service", "no-such-namespace", driver.settings,
                   w.fleet.kubeconfig("h1"), values={}, repository="").uninstall()
        kubeconfig = w.fleet.kubeconfig("h1")
        kubeconfig["users"] = [{"name": user["name"], "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "interactiveMode": "Never",
            "command": "no-such-credential-helper",
            "installHint": "credential helper not found: install no-such-credential-helper"}}}
            for user in kubeconfig["users"]]
        broken = HelmDriver(driver.client, "user-service", "h1", driver.settings, kubeconfig,
                            values={}, repository="")
        with pytest.raises(ClusterError, match="credential helper not found"):
            broken.uninstall()
    finally:
        engine.close()

def test_rolling_back_a_whole_release_uses_helm_rollback_on_each_cluster(helm_world):
    w = helm_world(["h1", "h2"])
    assert w.release("v1").exit_code == 0
    second = w.release("v2")
    assert second.exit_code == 0
    engine = w.engine()
    try:
        results = engine.rollback_release(second.release_id, by="test")
    finally:
        engine.close()
    assert sorted((r.cluster, r.outcome, r.rolled_back_to) for r in results) == [
        ("h1", "rolled_back", "v1"), ("h2", "rolled_back", "v1")]
    for cid in ("h1", "h2"):
        assert w.history(cid)[-1]["description"] == "Rollback to 1"
        assert w.version(cid) == "v1"
