"""The release flows through the official `kubernetes` client, one ApiClient per cluster."""

from __future__ import annotations

import time

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from console.sim.clock import ManualClock
from tests.sim.conftest import api_client, deployment

T = 10  # _request_timeout for every call


def wait_rolled_out(apps: client.AppsV1Api, name: str = "web", ns: str = "shop",
                    timeout: float = 20) -> client.V1Deployment:
    """Watch until `kubectl rollout status` would say done; fail on ProgressDeadlineExceeded."""
    w = watch.Watch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in w.stream(apps.list_namespaced_deployment, ns, field_selector=f"metadata.name={name}",
                              timeout_seconds=max(int(deadline - time.monotonic()), 1), _request_timeout=T + timeout):
            d = event["object"]
            s = d.status
            if (s.observed_generation or 0) < d.metadata.generation:
                continue
            if any(c.reason == "ProgressDeadlineExceeded" for c in s.conditions or ()):
                raise AssertionError("progress deadline exceeded")
            want = d.spec.replicas
            if (s.updated_replicas or 0) == want and (s.replicas or 0) == want and (s.available_replicas or 0) == want:
                w.stop()
                return d
    raise AssertionError("rollout did not finish")


def apply(apps: client.AppsV1Api, body: dict) -> client.V1Deployment:
    return apps.patch_namespaced_deployment(body["metadata"]["name"], body["metadata"]["namespace"], body,
                                            field_manager="release-console", force=True,
                                            _content_type="application/apply-patch+yaml", _request_timeout=T)


def revisions(apps: client.AppsV1Api, ns: str = "shop") -> dict[str, str]:
    """ReplicaSet revision -> image."""
    return {rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs.spec.template.spec.containers[0].image
            for rs in apps.list_namespaced_replica_set(ns, label_selector="app=web", _request_timeout=T).items}


def test_release_rollback_flow(sim_fleet):
    fleet = sim_fleet(["a", "b"], readiness_delay=0.2, jitter=0.1)
    api = api_client(fleet, "a")
    assert client.VersionApi(api).get_code(_request_timeout=T).minor == "32"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    created = apply(apps, deployment("reg.example/web:v1"))
    assert created.metadata.generation == 1
    d = wait_rolled_out(apps)
    assert [c.reason for c in d.status.conditions if c.type == "Progressing"] == ["NewReplicaSetAvailable"]

    # strategic merge patch as `kubectl set image` sends it
    patched = apps.patch_namespaced_deployment("web", "shop", {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"name": "web", "image": "reg.example/web:v2"}]}}}}, _request_timeout=T)
    assert patched.metadata.generation == 2
    assert patched.spec.template.spec.containers[0].ports[0].container_port == 8080  # merged, not replaced
    wait_rolled_out(apps)
    assert revisions(apps) == {"1": "reg.example/web:v1", "2": "reg.example/web:v2"}
    pods = core.list_namespaced_pod("shop", label_selector="app=web", _request_timeout=T).items
    assert len(pods) == 3 and all(p.spec.containers[0].image == "reg.example/web:v2" for p in pods)
    assert all(p.status.phase == "Running" and p.status.container_statuses[0].ready for p in pods)
    reasons = {e.reason for e in core.list_namespaced_event("shop", _request_timeout=T).items}
    assert {"ScalingReplicaSet", "SuccessfulCreate", "SuccessfulDelete"} <= reasons

    # rollback as `kubectl rollout undo` does it: JSON patch of the old template
    old = next(rs for rs in apps.list_namespaced_replica_set("shop", _request_timeout=T).items
               if rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1")
    template = api.sanitize_for_serialization(old.spec.template)
    del template["metadata"]["labels"]["pod-template-hash"]
    apps.patch_namespaced_deployment("web", "shop", [{"op": "replace", "path": "/spec/template", "value": template}],
                                     _request_timeout=T)
    wait_rolled_out(apps)
    assert revisions(apps) == {"3": "reg.example/web:v1", "2": "reg.example/web:v2"}
    d = apps.read_namespaced_deployment("web", "shop", _request_timeout=T)
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"

    # the other cluster is untouched and refuses this cluster's token
    other = client.CoreV1Api(api_client(fleet, "b"))
    assert "shop" not in [n.metadata.name for n in other.list_namespace(_request_timeout=T).items]
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(api_client(fleet, "b", fleet.admin_token("a"))).list_namespace(_request_timeout=T)
    assert err.value.status == 401


def test_never_pull_hits_the_progress_deadline(sim_fleet):
    fleet = sim_fleet(["a"], never_pull=["*broken*"])
    api = api_client(fleet, "a")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    apply(apps, deployment("reg.example/web:v1", deadline=1))
    wait_rolled_out(apps)
    apply(apps, deployment("reg.example/web:v2-broken", deadline=1))
    with pytest.raises(AssertionError, match="progress deadline exceeded"):
        wait_rolled_out(apps, timeout=10)
    pods = core.list_namespaced_pod("shop", _request_timeout=T).items
    waiting = [p.status.container_statuses[0].state.waiting for p in pods
               if p.spec.containers[0].image.endswith("broken")]
    assert waiting and all(w is not None and w.reason in ("ErrImagePull", "ImagePullBackOff") for w in waiting)
    assert sum(1 for p in pods if p.status.container_statuses[0].ready) == 3


def test_crash_tags_crash_loop_with_rising_restarts(sim_fleet):
    fleet = sim_fleet(["a"], crash=["*crash*"], readiness_delay=1, jitter=0,
                      clock=ManualClock())
    api = api_client(fleet, "a")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    apply(apps, deployment("reg.example/web:v1-crash"))
    seen: list[int] = []
    for _ in range(8):                  # 40 s of the simulator's time, read every 5 s
        fleet.advance(5)
        pod = core.list_namespaced_pod("shop", _request_timeout=T).items[0]
        cs = pod.status.container_statuses[0]
        assert cs.state.waiting and cs.state.waiting.reason == "CrashLoopBackOff", cs
        assert not cs.ready and cs.last_state.terminated.exit_code == 1
        seen.append(cs.restart_count)
    assert seen == sorted(seen) and seen[0] < seen[-1] and seen[-1] >= 4, seen


def test_errors_are_status_objects(sim_fleet):
    fleet = sim_fleet(["a"])
    api = api_client(fleet, "a")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    elsewhere = deployment()
    elsewhere["metadata"]["namespace"] = "missing"
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("missing", elsewhere, _request_timeout=T)
    assert err.value.status == 404 and 'namespaces \\"missing\\" not found' in err.value.body
    core.create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("web", "shop", _request_timeout=T)
    assert err.value.status == 404 and '"reason":"NotFound"' in err.value.body
    apps.create_namespaced_deployment("shop", deployment(), _request_timeout=T)
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("shop", deployment(), _request_timeout=T)
    assert err.value.status == 409 and '"reason":"AlreadyExists"' in err.value.body
    bad = deployment()
    bad["metadata"]["name"] = "bad"
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("shop", bad, _request_timeout=T)
    assert err.value.status == 422 and "selector" in err.value.body
    with pytest.raises(ApiException) as err:  # the namespace in the body must match the path
        apps.create_namespaced_deployment("default", deployment(), _request_timeout=T)
    assert err.value.status == 400


def test_self_subject_access_review_follows_the_token_rules(sim_fleet):
    fleet = sim_fleet(["a"])
    token = fleet.add_token("a", [{"verbs": ["get", "patch"], "apiGroups": ["apps"],
                                   "resources": ["deployments"], "namespaces": ["shop"]}])
    api = api_client(fleet, "a", token)
    authz = client.AuthorizationV1Api(api)

    def can(verb: str, ns: str) -> bool:
        review = {"spec": {"resourceAttributes": {"verb": verb, "group": "apps", "resource": "deployments",
                                                  "namespace": ns}}}
        return authz.create_self_subject_access_review(review, _request_timeout=T).status.allowed
    assert can("patch", "shop") and not can("delete", "shop") and not can("patch", "default")
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(api).list_namespaced_pod("shop", _request_timeout=T)
    assert err.value.status == 403


def test_leases_are_optimistically_locked(sim_fleet):
    fleet = sim_fleet(["a"])
    coord = client.CoordinationV1Api(api_client(fleet, "a"))
    lease = coord.create_namespaced_lease("default", {"metadata": {"name": "release-lock"},
                                                      "spec": {"holderIdentity": "alice",
                                                               "leaseDurationSeconds": 30}}, _request_timeout=T)
    first = lease.metadata.resource_version
    lease.spec.holder_identity = "bob"
    taken = coord.replace_namespaced_lease("release-lock", "default", lease, _request_timeout=T)
    assert taken.spec.holder_identity == "bob" and taken.metadata.resource_version != first
    lease.spec.holder_identity = "carol"  # still carries the first resourceVersion
    with pytest.raises(ApiException) as err:
        coord.replace_namespaced_lease("release-lock", "default", lease, _request_timeout=T)
    assert err.value.status == 409 and '"reason":"Conflict"' in err.value.body
    coord.delete_namespaced_lease("release-lock", "default", _request_timeout=T)
    assert coord.list_namespaced_lease("default", _request_timeout=T).items == []


def test_nodes_and_all_namespace_lists(sim_fleet):
    fleet = sim_fleet(["a"])
    api = api_client(fleet, "a")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    nodes = core.list_node(_request_timeout=T).items
    assert len(nodes) == 3 and nodes[0].status.allocatable["cpu"] == "4"
    for ns in ("one", "two"):
        core.create_namespace({"metadata": {"name": ns}}, _request_timeout=T)
        body = deployment()
        body["metadata"]["namespace"] = ns
        apps.create_namespaced_deployment(ns, body, _request_timeout=T)
    everywhere = apps.list_deployment_for_all_namespaces(_request_timeout=T).items
    assert sorted(d.metadata.namespace for d in everywhere) == ["one", "two"]
    page = core.list_namespace(limit=2, _request_timeout=T)
    assert len(page.items) == 2 and page.metadata._continue
    rest = core.list_namespace(limit=10, _continue=page.metadata._continue, _request_timeout=T)
    names = [n.metadata.name for n in page.items + rest.items]
    assert len(names) == len(set(names)) == 6


def test_deleting_a_deployment_removes_its_replicasets_and_pods(sim_fleet):
    fleet = sim_fleet(["a"])
    api = api_client(fleet, "a")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    apps.create_namespaced_deployment("shop", deployment(), _request_timeout=T)
    wait_rolled_out(apps)
    apps.delete_namespaced_deployment("web", "shop", _request_timeout=T)
    assert apps.list_namespaced_replica_set("shop", _request_timeout=T).items == []
    assert core.list_namespaced_pod("shop", _request_timeout=T).items == []
    core.delete_namespace("shop", _request_timeout=T)
    assert "shop" not in [n.metadata.name for n in core.list_namespace(_request_timeout=T).items]
