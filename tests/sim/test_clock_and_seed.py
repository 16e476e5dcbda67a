"""Driving the simulator's time (`ManualClock`) and replaying its random faults (`seed`)."""

from __future__ import annotations

import json

from kubernetes import client

from console.kube.client import ClusterError, KubeClient
from console.sim import SimFleet
from console.sim.clock import ManualClock
from tests.sim.conftest import api_client, deployment

T = 10
START = 1_800_000_000.0     # 2027-01-15T08:00:00Z


def _deployment_state(fleet: SimFleet, cid: str = "a") -> tuple[int, dict[str, tuple[str, str]]]:
    dep = fleet.get(cid, "apps/deployments", "shop", "web")
    status = dep.get("status") or {}
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or ()}
    return int(status.get("readyReplicas") or 0), conditions


def _create(fleet: SimFleet, body: dict) -> None:
    api = api_client(fleet, "a")
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "shop"}}, _request_timeout=T)
        client.AppsV1Api(api).create_namespaced_deployment("shop", body, _request_timeout=T)
    finally:
        api.close()


def test_a_manual_clock_moves_pods_and_deadlines_only_when_advanced(sim_fleet):
    clock = ManualClock(START)
    fleet = sim_fleet(["a"], readiness_delay=30.0, jitter=0.0, clock=clock)
    _create(fleet, deployment())
    fleet.call(lambda: None)     # the controllers' first syncs have run
    ready, conditions = _deployment_state(fleet)
    assert ready == 0 and conditions["Available"][0] == "False"
    # Times the cluster writes are the clock's, not the machine's.
    dep = fleet.get("a", "apps/deployments", "shop", "web")
    assert dep["metadata"]["creationTimestamp"] == "2027-01-15T08:00:00Z"
    fleet.advance(29.0)
    assert _deployment_state(fleet)[0] == 0          # not yet: 30 s have not passed
    fleet.advance(1.5)
    ready, conditions = _deployment_state(fleet)
    assert ready == 3 and conditions["Available"] == ("True", "MinimumReplicasAvailable")
    assert conditions["Progressing"] == ("True", "NewReplicaSetAvailable")


def test_a_progress_deadline_runs_out_on_the_manual_clock(sim_fleet):
    fleet = sim_fleet(["a"], readiness_delay=1.0, jitter=0.0, never_pull=["*broken*"],
                      clock=ManualClock(START))
    _create(fleet, deployment("registry.example.com/web:broken", deadline=600))
    fleet.advance(5)
    assert _deployment_state(fleet)[1]["Progressing"][1] == "ReplicaSetUpdated"
    fleet.advance(590)        # 595 s: still within progressDeadlineSeconds
    assert _deployment_state(fleet)[1]["Progressing"][0] == "True"
    fleet.advance(10)         # ten minutes of rollout, no wait
    assert _deployment_state(fleet)[1]["Progressing"] == ("False", "ProgressDeadlineExceeded")


def test_a_death_and_revival_follow_the_manual_clock(sim_fleet):
    fleet = sim_fleet(["a"], clock=ManualClock(START), die_at=100, revive_after=50)
    kube = KubeClient("a", api_client(fleet, "a", retries=False), timeout=T)
    try:
        kube.request("GET", "/api/v1/namespaces")
        fleet.advance(101)
        try:
            kube.request("GET", "/api/v1/namespaces", retry=False)
            raise AssertionError("the cluster answered after dying")
        except ClusterError as err:
            assert err.unreachable
        fleet.advance(60)
        assert kube.request("GET", "/api/v1/namespaces")["items"]
    finally:
        kube.close()


def _fates(fleet: SimFleet, paths: list[str]) -> list[tuple[str, int]]:
    """(path, status) of one GET per entry of `paths`, without retries."""
    kube = KubeClient("a", api_client(fleet, "a", retries=False), timeout=T)
    out = []
    try:
        for path in paths:
            try:
                kube.request("GET", path, retry=False)
                out.append((path, 200))
            except ClusterError as err:
                out.append((path, err.status or 0))
    finally:
        kube.close()
    return out


def test_a_seed_replays_every_injected_fault_whatever_the_interleaving(sim_fleet):
    nodes, namespaces = "/api/v1/nodes", "/api/v1/namespaces"
    fates = []
    for order in ([nodes, namespaces] * 40, [nodes] * 40 + [namespaces] * 40):
        fleet = sim_fleet(["a"], seed=4242, error_rate=0.3, error_codes=[500, 429],
                          retry_after=0)
        got = _fates(fleet, order)
        # The n-th GET of each path, however the two paths were interleaved.
        fates.append({p: [code for path, code in got if path == p] for p in (nodes, namespaces)})
        fleet.stop()
    assert fates[0] == fates[1]
    codes = [c for per_path in fates[0].values() for c in per_path]
    assert {200, 500, 429} <= set(codes) and 0.15 < codes.count(200) / len(codes) < 0.9
    other = sim_fleet(["a"], seed=4243, error_rate=0.3, error_codes=[500, 429], retry_after=0)
    got = _fates(other, [nodes, namespaces] * 40)
    assert {p: [c for path, c in got if path == p] for p in (nodes, namespaces)} != fates[0]


def test_an_unseeded_fleet_draws_a_seed_that_replays_it(sim_fleet):
    first = sim_fleet(["a"])
    assert not first.seeded and isinstance(first.seed, int)
    again = sim_fleet(["a"], seed=first.seed, error_rate=0.5, error_codes=[500])
    replay = sim_fleet(["a"], seed=first.seed, error_rate=0.5, error_codes=[500])
    paths = ["/api/v1/nodes"] * 30
    assert _fates(again, paths) == _fates(replay, paths)


def test_kubectl_ages_count_on_the_manual_clock(sim_fleet):
    fleet = sim_fleet(["a"], clock=ManualClock(START))
    _create(fleet, deployment())
    fleet.advance(3 * 3600 + 5)
    api = api_client(fleet, "a")
    try:
        _m, url, headers, _b, _p = api.param_serialize(
            method="GET", resource_path="/apis/apps/v1/namespaces/shop/deployments",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            auth_settings=["BearerToken"])
        resp = api.call_api("GET", url, header_params=headers, _request_timeout=T)
        table = json.loads(resp.read())
    finally:
        api.close()
    names = [c["name"] for c in table["columnDefinitions"]]
    [row] = table["rows"]
    assert row["cells"][names.index("Age")] == "3h"


def test_hold_ready_keeps_pods_not_ready_until_it_is_lifted(sim_fleet):
    # A rollout held for as long as a test needs (then let go), not for a guessed time.
    fleet = sim_fleet(["a"], readiness_delay=1.0, jitter=0.0, clock=ManualClock(START))
    fleet.set_faults("a", hold_ready=["v2"])
    _create(fleet, deployment("registry.example.com/web:v2"))
    fleet.advance(600)
    ready, _conditions = _deployment_state(fleet)
    pods = fleet.list("a", "/pods", "shop")
    assert ready == 0 and pods and all(p["status"]["phase"] == "Running" for p in pods)
    fleet.set_faults("a", hold_ready=[])
    fleet.advance(0.2)
    assert _deployment_state(fleet)[0] == 3


def _table_ages(fleet: SimFleet) -> dict[str, str]:
    """Deployment name -> the AGE cell of `kubectl get deployments` (a Table) in shop."""
    api = api_client(fleet, "a")
    try:
        response = client.AppsV1Api(api).list_namespaced_deployment(
            "shop", _preload_content=False, _request_timeout=T,
            _headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        table = json.loads(response.data)
    finally:
        api.close()
    names = [c["name"] for c in table["columnDefinitions"]]
    return {row["cells"][0]: row["cells"][names.index("Age")] for row in table["rows"]}


def test_a_tables_age_and_the_app_metrics_keep_the_manual_clocks_time(sim_fleet):
    """AGE is the clock's time since the creationTimestamp it wrote, and the app's request
    counters grow by the clock's seconds, not the machine's."""
    from console.sim.metrics import RATE, app_metrics

    clock = ManualClock(START)
    fleet = sim_fleet(["a"], readiness_delay=1.0, jitter=0.0, clock=clock)
    _create(fleet, deployment())
    fleet.advance(2.0)                                   # 3 pods Ready
    assert _table_ages(fleet) == {"web": "2s"}
    fleet.advance(600.0)
    assert _table_ages(fleet) == {"web": "10m"}

    def served() -> int:
        text = fleet.call(lambda: app_metrics(fleet.clusters["a"]))
        return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("http_requests_total"))

    first = served()
    fleet.advance(10.0)
    assert served() - first == int(RATE * 10 * 3)       # 3 Ready pods, 10 clock seconds
    assert served() - first == int(RATE * 10 * 3)       # no clock time passed since
