"""Pre-flight's read of the Deployment stands for "what ran before" during the release
(issue 16: one read less per cluster): the apply carries its resourceVersion as a
precondition, and a Deployment changed since is read again
(tests/engine/test_driver.py counts the requests)."""

from __future__ import annotations

from console.engine import ReleaseRequest
from console.events import Kind
from console.kube.client import KubeClient, new_api_client

from .conftest import APP


def test_a_deployment_changed_after_preflight_is_read_again_and_rolled_back_to(world):
    """Someone changes the Deployment between pre-flight and the apply: the apply's
    precondition fails (nothing written), the console reads again, and when the release
    fails there it goes back to what ran just before it - not to pre-flight's reading."""
    w = world(["a"])
    w.deploy_everywhere("v1")
    w.fleet.set_faults("a", never_pull=["v2"])
    kubeconfig = w.fleet.kubeconfig("a")
    client = KubeClient("a", new_api_client("a", kubeconfig))
    path = f"/apis/apps/v1/namespaces/a/deployments/{APP}"

    def change_behind_its_back(event) -> None:
        if event.kind is Kind.RELEASE_STARTED:
            container = client.request("GET", path)["spec"]["template"]["spec"]["containers"][0]
            repo = container["image"].split("@")[0].rsplit(":", 1)[0]
            client.request("PATCH", path, body={"spec": {"template": {"spec": {"containers": [
                {"name": container["name"], "image": f"{repo}:v1b"}]}}}},
                content_type="application/strategic-merge-patch+json")

    engine = w.engine()
    engine.add_listener(change_behind_its_back)
    result = engine.run(ReleaseRequest(tag="v2"), w.approve)
    client.close()
    (a,) = result.clusters
    assert a.outcome == "rolled_back" and a.rolled_back_to == "v1b", a
    assert w.version("a") == "v1b"
    started = w.recorder.of(Kind.CLUSTER_HEALTHY) + w.recorder.of(Kind.CLUSTER_ROLLED_BACK)
    assert [e.data.get("version") for e in started] == ["v1b"]
