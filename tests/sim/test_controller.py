"""Rollout controller fidelity: surge and unavailability bounds, Recreate, history limit,
observedGeneration, the progress deadline counted from the last progress."""

from __future__ import annotations

from kubernetes import client, watch

from console.sim.clock import ManualClock
from tests.sim.conftest import api_client, deployment

T = 10


def _setup(fleet, replicas: int, **spec):
    api = api_client(fleet, "a")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    body = deployment("img:v1")
    body["spec"]["replicas"] = replicas
    body["spec"].update(spec)
    apps.create_namespaced_deployment("shop", body, _request_timeout=T)
    return core, apps


def _rv(apps) -> str:
    return apps.list_namespaced_deployment("shop", _request_timeout=T).metadata.resource_version


def _watch_until_done(apps, since: str | None = None, timeout=20):
    """Every status seen (after resourceVersion `since`, if given) until the rollout completes."""
    seen = []
    extra = {"resource_version": since} if since else {}
    for event in watch.Watch().stream(apps.list_namespaced_deployment, "shop", timeout_seconds=timeout,
                                      _request_timeout=timeout + 5, **extra):
        d = event["object"]
        s = d.status
        seen.append(s)
        want = d.spec.replicas
        if ((s.observed_generation or 0) >= d.metadata.generation and (s.updated_replicas or 0) == want
                and (s.replicas or 0) == want and (s.available_replicas or 0) == want):
            return seen
    raise AssertionError("no completion")


def test_rolling_update_respects_max_surge_and_max_unavailable(sim_fleet):
    fleet = sim_fleet(["a"], readiness_delay=0.2, jitter=0.2)
    core, apps = _setup(fleet, 8)  # 25%: surge 2, unavailable 2
    _watch_until_done(apps)
    since = _rv(apps)
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "img:v2"}]}}}}, _request_timeout=T)
    seen = _watch_until_done(apps, since)
    assert max(s.replicas or 0 for s in seen) <= 10
    assert min(s.available_replicas or 0 for s in seen) >= 6
    assert max(s.replicas or 0 for s in seen) > 8  # it did surge
    assert len(apps.list_namespaced_replica_set("shop", _request_timeout=T).items) == 2


def test_recreate_stops_every_old_pod_first(sim_fleet):
    fleet = sim_fleet(["a"], readiness_delay=0.2, jitter=0)
    core, apps = _setup(fleet, 3, strategy={"type": "Recreate"})
    _watch_until_done(apps)
    since = _rv(apps)
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "img:v2"}]}}}}, _request_timeout=T)
    seen = _watch_until_done(apps, since)
    # never old and new pods at once: replicas only ever counts one generation of pods
    assert all((s.replicas or 0) in (0, s.updated_replicas or 0) or not s.updated_replicas for s in seen)
    assert any((s.replicas or 0) == 0 for s in seen)


def test_revision_history_limit_prunes_old_replicasets(sim_fleet):
    fleet = sim_fleet(["a"], readiness_delay=0.1, jitter=0)
    core, apps = _setup(fleet, 1, revisionHistoryLimit=1)
    _watch_until_done(apps)
    for tag in ("v2", "v3", "v4"):
        apps.patch_namespaced_deployment("web", "shop", {"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": f"img:{tag}"}]}}}}, _request_timeout=T)
        _watch_until_done(apps)
    revisions = sorted(int(rs.metadata.annotations["deployment.kubernetes.io/revision"])
                       for rs in apps.list_namespaced_replica_set("shop", _request_timeout=T).items)
    assert revisions == [3, 4]


def test_metadata_changes_do_not_bump_generation_and_scaling_does(sim_fleet):
    fleet = sim_fleet(["a"], readiness_delay=0.1, jitter=0)
    core, apps = _setup(fleet, 2)
    _watch_until_done(apps)
    d = apps.patch_namespaced_deployment("web", "shop", {"metadata": {"annotations": {"note": "x"}}},
                                         _request_timeout=T)
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 3}}, _request_timeout=T)
    assert d.spec.replicas == 3
    seen = _watch_until_done(apps)
    assert seen[-1].observed_generation == 2 and seen[-1].ready_replicas == 3
    assert len(apps.list_namespaced_replica_set("shop", _request_timeout=T).items) == 1  # no new template


def _status(fleet) -> dict:
    """shop/web's status as the cluster holds it now (read on the loop, no request)."""
    return fleet.get("a", "apps/deployments", "shop", "web").get("status") or {}


def _progressing(fleet) -> tuple[str, str]:
    c = next(c for c in _status(fleet)["conditions"] if c["type"] == "Progressing")
    return c["status"], c["reason"]


def _new_image(apps, tag: str = "v2") -> None:
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": f"img:{tag}"}]}}}}, _request_timeout=T)


def test_progress_deadline_counts_from_the_last_progress(sim_fleet):
    # slow pods (1.5 s each) under a 2 s deadline, one at a time (3 replicas at 25%: surge
    # 1, unavailable 0): every pod that becomes ready is progress, so a rollout taking
    # 4.5 s of the simulator's time must still succeed
    fleet = sim_fleet(["a"], readiness_delay=1.5, jitter=0, clock=ManualClock())
    core, apps = _setup(fleet, 3, progressDeadlineSeconds=2)
    fleet.advance(10)
    assert _status(fleet).get("availableReplicas") == 3
    _new_image(apps)
    reasons, done_at = set(), None
    for step in range(1, 21):              # 10 s in half seconds
        fleet.advance(0.5)
        reasons.add(_progressing(fleet)[1])
        if done_at is None and _progressing(fleet)[1] == "NewReplicaSetAvailable":
            done_at = step * 0.5
    assert done_at is not None and done_at >= 4.5     # over twice the deadline
    assert "ProgressDeadlineExceeded" not in reasons and "ReplicaSetUpdated" in reasons
    assert _progressing(fleet) == ("True", "NewReplicaSetAvailable")
    assert _status(fleet)["updatedReplicas"] == 3 == _status(fleet)["availableReplicas"]


def test_min_ready_seconds_delays_availability(sim_fleet):
    fleet = sim_fleet(["a"], readiness_delay=1, jitter=0, clock=ManualClock())
    core, apps = _setup(fleet, 2, minReadySeconds=10)
    fleet.advance(2)
    assert _status(fleet).get("readyReplicas") == 2 and not _status(fleet).get("availableReplicas")
    fleet.advance(8.5)                     # ready at 1 s, 10 s later is 11 s: not yet
    assert not _status(fleet).get("availableReplicas")
    fleet.advance(1)
    assert _status(fleet).get("availableReplicas") == 2
    rs = apps.list_namespaced_replica_set("shop", _request_timeout=T).items[0]
    assert rs.status.available_replicas == 2


def test_pause_and_resume_conditions(sim_fleet):
    fleet = sim_fleet(["a"], readiness_delay=1, jitter=0, clock=ManualClock())
    core, apps = _setup(fleet, 2)
    fleet.advance(5)
    assert _progressing(fleet) == ("True", "NewReplicaSetAvailable")
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"paused": True}}, _request_timeout=T)
    _new_image(apps)
    fleet.advance(5)
    assert _progressing(fleet) == ("Unknown", "DeploymentPaused")
    assert len(apps.list_namespaced_replica_set("shop", _request_timeout=T).items) == 1  # nothing rolled
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"paused": False}}, _request_timeout=T)
    fleet.advance(10)
    assert _progressing(fleet) == ("True", "NewReplicaSetAvailable")
    assert len(apps.list_namespaced_replica_set("shop", _request_timeout=T).items) == 2
