"""Fault injection: error rates with Retry-After, latency, death and revival with state kept,
a lagging observedGeneration, unreachable clusters, counters and concurrent rollouts."""

from __future__ import annotations

import time

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from console.sim import ClusterSpec
from console.sim.clock import ManualClock
from tests.sim.conftest import api_client, deployment

T = 5


def test_error_rate_answers_429_with_retry_after_and_500(sim_fleet):
    fleet = sim_fleet(["a"], seed=19)
    core = client.CoreV1Api(api_client(fleet, "a", retries=False))
    fleet.set_faults("a", error_rate=1.0, error_codes=[429], retry_after=3)
    with pytest.raises(ApiException) as err:
        core.list_namespace(_request_timeout=T)
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "3"
    assert '"reason":"TooManyRequests"' in err.value.body
    fleet.set_faults("a", error_codes=[500])
    with pytest.raises(ApiException) as err:
        core.list_namespace(_request_timeout=T)
    assert err.value.status == 500 and '"kind":"Status"' in err.value.body
    fleet.set_faults("a", error_rate=0.5, error_codes=[500, 429])
    outcomes = []
    for _ in range(60):
        try:
            core.list_namespace(_request_timeout=T)
            outcomes.append(200)
        except ApiException as exc:
            outcomes.append(exc.status)
    assert {200, 429, 500} <= set(outcomes)
    assert 10 < outcomes.count(200) < 50
    assert fleet.counters("a")["injected_errors"] == 2 + outcomes.count(429) + outcomes.count(500)
    fleet.set_faults("a", error_rate=0)
    assert core.list_namespace(_request_timeout=T).items


def test_the_default_client_honours_retry_after(sim_fleet):
    fleet = sim_fleet(["a"])
    core = client.CoreV1Api(api_client(fleet, "a"))
    fleet.set_faults("a", error_rate=1.0, error_codes=[429], retry_after=0)
    with pytest.raises(ApiException) as err:
        core.list_namespace(_request_timeout=T)
    assert err.value.status == 429
    assert fleet.counters("a")["by_verb_resource"] == {"list namespaces": 4}  # urllib3: 1 + 3 retries


def test_latency_delays_every_api_call(sim_fleet):
    fleet = sim_fleet(["a"])
    core = client.CoreV1Api(api_client(fleet, "a"))
    core.list_namespace(_request_timeout=T)  # connection set up
    fleet.set_faults("a", latency=0.3)
    started = time.monotonic()
    core.list_namespace(_request_timeout=T)
    assert time.monotonic() - started >= 0.3
    fleet.set_faults("a", latency=0)
    started = time.monotonic()
    core.list_namespace(_request_timeout=T)
    assert time.monotonic() - started < 0.2


def test_kill_and_revive_keep_the_state(sim_fleet):
    fleet = sim_fleet(["a", "b"])
    core = client.CoreV1Api(api_client(fleet, "a"))
    core.create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    fleet.kill("a")
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        client.CoreV1Api(api_client(fleet, "a")).list_namespace(_request_timeout=T)
    # the rest of the fleet carries on
    assert client.CoreV1Api(api_client(fleet, "b")).list_namespace(_request_timeout=T).items
    fleet.revive("a")
    names = [n.metadata.name for n in client.CoreV1Api(api_client(fleet, "a")).list_namespace(_request_timeout=T).items]
    assert "shop" in names


def test_die_at_and_revive_after_from_the_sim_block(sim_fleet):
    fleet = sim_fleet([ClusterSpec("a", {"die_at": 30, "revive_after": 60})],
                      clock=ManualClock())
    api = client.CoreV1Api(api_client(fleet, "a"))
    api.create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    fleet.advance(31)
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        client.CoreV1Api(api_client(fleet, "a")).list_namespace(_request_timeout=T)
    fleet.advance(58)
    with pytest.raises(urllib3.exceptions.MaxRetryError):   # not yet: 60 s down at 90
        client.CoreV1Api(api_client(fleet, "a")).list_namespace(_request_timeout=T)
    fleet.advance(1)
    names = [n.metadata.name for n in client.CoreV1Api(api_client(fleet, "a")).list_namespace(_request_timeout=T).items]
    assert "shop" in names


def test_unreachable_cluster_refuses_connections(sim_fleet):
    fleet = sim_fleet([ClusterSpec("down", {"unreachable": True}), "up"])
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        client.CoreV1Api(api_client(fleet, "down")).list_namespace(_request_timeout=T)
    fleet.set_faults("down", unreachable=False)
    assert client.CoreV1Api(api_client(fleet, "down")).list_namespace(_request_timeout=T).items


def test_lagging_observed_generation(sim_fleet):
    fleet = sim_fleet([ClusterSpec("a", {"lag_generation": 5})], clock=ManualClock())
    api = api_client(fleet, "a")
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("shop", deployment(), _request_timeout=T)
    fleet.advance(4.9)
    d = apps.read_namespaced_deployment("web", "shop", _request_timeout=T)
    assert d.metadata.generation == 1 and (d.status.observed_generation or 0) == 0
    fleet.advance(0.2)
    d = apps.read_namespaced_deployment("web", "shop", _request_timeout=T)
    assert d.status.observed_generation == 1


def test_slow_pods_follow_the_per_cluster_readiness_delay(sim_fleet):
    fleet = sim_fleet([ClusterSpec("slow", {"readiness_delay": 60, "jitter": 0}), "fast"],
                      readiness_delay=1, jitter=0, clock=ManualClock())
    for cid in ("slow", "fast"):
        api = api_client(fleet, cid)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
        client.AppsV1Api(api).create_namespaced_deployment("shop", deployment(), _request_timeout=T)
    fleet.advance(30)
    ready = {cid: client.AppsV1Api(api_client(fleet, cid)).read_namespaced_deployment(
        "web", "shop", _request_timeout=T).status.ready_replicas for cid in ("slow", "fast")}
    assert ready == {"slow": None, "fast": 3}


def test_counters_and_max_concurrent_rollouts(sim_fleet):
    fleet = sim_fleet(["a", "b", "c"], readiness_delay=1.0, jitter=0)
    apis = {cid: api_client(fleet, cid) for cid in fleet.ids}
    for api in apis.values():
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    # the client builds its Deployment models on first use, slowly: do that before the clock runs
    client.AppsV1Api(apis["a"]).list_namespaced_deployment("shop", _request_timeout=T)
    for api in apis.values():
        client.AppsV1Api(api).create_namespaced_deployment("shop", deployment(), _request_timeout=T)
    assert fleet.max_concurrent_rollouts == 3
    counters = fleet.counters("a")
    assert counters["by_verb_resource"] == {"create namespaces": 1, "list deployments": 1,
                                            "create deployments": 1}
    assert counters["total"] == 3 and counters["by_verb"]["create"] == 2
    deadline = time.monotonic() + 5
    while fleet.active_rollouts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fleet.active_rollouts == 0 and fleet.max_concurrent_rollouts == 3


def test_set_faults_rejects_unknown_settings(sim_fleet):
    fleet = sim_fleet(["a"])
    with pytest.raises(TypeError, match="error_rat"):
        fleet.set_faults("a", error_rat=0.5)


def test_bad_settings_name_the_cluster():
    from console.sim import SimFleet
    with pytest.raises(ValueError, match="cluster x: sim.error_rate"):
        SimFleet([ClusterSpec("x", {"error_rate": "lots"})])
    with pytest.raises(ValueError, match="between 0 and 1"):
        SimFleet([ClusterSpec("x", {"error_rate": 2})])


def test_kill_drops_open_watches(sim_fleet):
    import threading
    fleet = sim_fleet(["a"])
    core = client.CoreV1Api(api_client(fleet, "a", retries=False))
    outcome: list[str] = []

    def watch_namespaces() -> None:
        from kubernetes import watch
        try:
            for _ in watch.Watch().stream(core.list_namespace, timeout_seconds=30, _request_timeout=30):
                pass
            outcome.append("ended")
        except Exception as exc:  # the connection was dropped under the client
            outcome.append(type(exc).__name__)
    t = threading.Thread(target=watch_namespaces)
    t.start()
    deadline = time.monotonic() + 30    # until the watch has reached the cluster
    while "watch namespaces" not in fleet.counters("a")["by_verb_resource"]:
        assert time.monotonic() < deadline, "the watch never reached the cluster"
        time.sleep(0.02)
    started = time.monotonic()
    fleet.kill("a")
    t.join(10)
    assert not t.is_alive() and time.monotonic() - started < 5
    assert outcome and outcome[0] != "ended"


def test_admin_endpoint_changes_faults(sim_fleet):
    import json
    import urllib.request
    fleet = sim_fleet(["a"])
    request = urllib.request.Request(f"{fleet.url('a')}/_sim/faults", method="POST",
                                     data=json.dumps({"error_rate": 1.0, "error_codes": [500]}).encode(),
                                     headers={"Authorization": f"Bearer {fleet.admin_token('a')}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=fleet.tls.client_context(), timeout=5) as resp:
        assert resp.status == 200
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(api_client(fleet, "a", retries=False)).list_namespace(_request_timeout=T)
    assert err.value.status == 500
    limited = fleet.add_token("a", [{"verbs": ["*"]}])
    request.headers["Authorization"] = f"Bearer {limited}"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, context=fleet.tls.client_context(), timeout=5)
    assert denied.value.code == 403


def test_lifting_never_pull_lets_stuck_pods_start(sim_fleet):
    fleet = sim_fleet(["a"], never_pull=["*v1*"], readiness_delay=1, jitter=0,
                      clock=ManualClock())
    api = api_client(fleet, "a")
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("shop", deployment("reg.example/web:v1"), _request_timeout=T)
    fleet.advance(6)
    pods = client.CoreV1Api(api).list_namespaced_pod("shop", _request_timeout=T).items
    assert {p.status.container_statuses[0].state.waiting.reason for p in pods} <= {"ErrImagePull",
                                                                                  "ImagePullBackOff"}
    assert not apps.read_namespaced_deployment("web", "shop", _request_timeout=T).status.ready_replicas
    fleet.set_faults("a", never_pull=[])
    fleet.advance(20)       # the next pull (back-off at most 10 s) succeeds, then Ready
    assert apps.read_namespaced_deployment("web", "shop", _request_timeout=T).status.available_replicas == 3
