"""The bake judges only what is the release's, and only what lasts (issue 14 review):
a manual rollback during the bake is the operator's (no failure, no second rollback); a
pod evicted during the bake is replaced within the grace (no failure) while a
degradation that outlives it fails; an HPA scaling the Deployment (spec.replicas) is no
change of what the console applied. On the simulator, through the real engine."""

from __future__ import annotations

import ssl
import threading
from typing import Any

import httpx

from console.engine import GateAnswer, GateDecision, ReleaseRequest
from console.events import Kind
from tests.waiting import wait_for


def _api(fleet: Any, cid: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request to the simulated cluster's API as its admin (another terminal's kubectl)."""
    return httpx.request(method, f"{fleet.url(cid)}{path}",
                         headers={"Authorization": f"Bearer {fleet.admin_token(cid)}",
                                  **kwargs.pop("headers", {})},
                         verify=ssl.create_default_context(cafile=str(fleet.ca_file)),
                         timeout=10, **kwargs)


def _approve(_request: Any) -> GateAnswer:
    return GateAnswer(GateDecision.APPROVE, by="test")


def _canary_at_v1(world, bake: str, seed: int, gates: bool = False,
                  **engine_options: Any) -> tuple[Any, Any]:
    """s1 then p1, a canary whose first wave bakes `bake` (then a gate, with `gates`),
    both at v1 and the recorder cleared; (world, engine with `engine_options`)."""
    canary: dict[str, Any] = {"waves": [["s1"], ["p1"]], "bake": bake}
    if gates:
        canary["gates"] = True
    w = world(["s1", "p1"], strategies={"canary": canary}, seed=seed)
    w.deploy_everywhere("v1")
    w.recorder.events.clear()
    return w, w.engine(**engine_options)


def test_a_manual_rollback_during_the_bake_is_the_operators_not_a_bake_failure(world):
    w, engine = _canary_at_v1(world, "6s", 41, gates=True)
    manual: list[Any] = []

    def carol_rolls_back(event) -> None:
        if event.kind is Kind.WAVE_BAKING and event.data["wave"] == 0:
            thread = threading.Thread(
                target=lambda: manual.append(engine.rollback("s1", "v1", by="carol")))
            thread.start()
            manual.append(thread)

    engine.add_listener(carol_rolls_back)
    result = engine.run(ReleaseRequest(tag="v2", strategy="canary"), _approve)
    manual[0].join(60)
    assert manual[1].outcome.value == "rolled_back", manual
    # Not a failure of the release: nothing counted, no automatic rollback beside carol's.
    assert [e.cluster for e in w.recorder.of(Kind.CLUSTER_FAILED)] == []
    rolling = [(e.cluster, e.data.get("by")) for e in w.recorder.of(Kind.CLUSTER_ROLLING_BACK)]
    assert rolling == [("s1", "carol")], rolling
    baked = w.recorder.of(Kind.WAVE_BAKED)[0]
    assert (baked.data["ok"], baked.data["failed"]) == (True, [])
    assert result.exit_code == 0, result
    assert (w.version("s1"), w.version("p1")) == ("v1", "v2")


def test_a_pod_evicted_during_the_bake_is_replaced_within_the_grace(world):
    w, engine = _canary_at_v1(world, "4s", 42, grace=10.0)
    evicted: list[str] = []

    def evict(event) -> None:
        if event.kind is Kind.WAVE_BAKING and event.data["wave"] == 0:
            evicted.append(_evict_one(w.fleet, "s1"))

    engine.add_listener(evict)
    result = engine.run(ReleaseRequest(tag="v2", strategy="canary"), _approve)
    assert evicted
    assert [e.data["error"] for e in w.recorder.of(Kind.CLUSTER_FAILED)] == []
    assert result.exit_code == 0, result
    assert (w.version("s1"), w.version("p1")) == ("v2", "v2")


def _evict_one(fleet: Any, cid: str) -> str:
    """Delete one running pod of the app (an eviction, a drain); returns its name."""
    pod = next(p for p in fleet.list(cid, "/pods", cid)
               if not p["metadata"].get("deletionTimestamp"))
    name = pod["metadata"]["name"]
    answer = _api(fleet, cid, "DELETE", f"/api/v1/namespaces/{cid}/pods/{name}")
    assert answer.status_code == 200, answer.text
    return name


def test_a_degradation_that_outlives_the_grace_fails_the_bake(world):
    # A pod is evicted during the bake and its replacement never gets Ready: the
    # Deployment stays unavailable past the grace - a failure, told as lasting.
    w, engine = _canary_at_v1(world, "3s", 43, grace=1.0)

    def evict_for_good(event) -> None:
        if event.kind is Kind.WAVE_BAKING and event.data["wave"] == 0:
            w.fleet.set_faults("s1", readiness_delay=600.0, jitter=0.0)
            _evict_one(w.fleet, "s1")
        elif event.kind is Kind.CLUSTER_FAILED:     # the rollback's pods may get Ready
            w.fleet.set_faults("s1", readiness_delay=1.0, jitter=1.0)

    engine.add_listener(evict_for_good)
    result = engine.run(ReleaseRequest(tag="v2", strategy="canary"), _approve)
    failed = [e.data["error"] for e in w.recorder.of(Kind.CLUSTER_FAILED)]
    assert failed == ["failed during the bake: Deployment unavailable: 1/2 available "
                      "(for over 1s)"], failed
    assert result.exit_code == 1, result
    assert [(c.cluster, c.outcome.value) for c in result.clusters] == \
        [("s1", "rolled_back"), ("p1", "skipped")]


def test_an_hpa_scaling_during_the_bake_is_no_failure(world):
    w, engine = _canary_at_v1(world, "4s", 44, grace=10.0)
    scaled: list[int] = []

    def hpa(event) -> None:
        if event.kind is Kind.WAVE_BAKING and event.data["wave"] == 0:
            answer = _api(w.fleet, "s1", "PATCH",
                          "/apis/apps/v1/namespaces/s1/deployments/user-service",
                          headers={"Content-Type": "application/merge-patch+json"},
                          json={"spec": {"replicas": 3}})
            assert answer.status_code == 200, answer.text
            scaled.append(answer.json()["metadata"]["generation"])

    engine.add_listener(hpa)
    result = engine.run(ReleaseRequest(tag="v2", strategy="canary"), _approve)
    assert scaled
    assert [e.data["error"] for e in w.recorder.of(Kind.CLUSTER_FAILED)] == []
    assert result.exit_code == 0, result
    wait_for(lambda: w.ready_pods("s1", "v2") == 3, "the third v2 pod on s1")


def test_a_cluster_whose_lease_another_console_took_during_the_bake_is_left_to_it(world):
    # Another console takes s1's lease during the bake and changes the image: s1 is its
    # now - the bake neither fails it nor rolls it back (it did: "image replaced", then
    # an automatic rollback on a cluster this release no longer held).
    import logging

    from console.locks import lease_name
    from tests.engine.conftest import APP
    from tests.engine.test_bake import set_image_by_hand
    w, engine = _canary_at_v1(world, "4s", 45, lock_duration=3)      # renewed every 1.5 s
    lost = threading.Event()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "lock lost on s1" in record.getMessage():
                lost.set()

    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/s1/leases/{lease_name(APP)}"

    def take_s1(event) -> None:
        if event.kind is Kind.WAVE_BAKING and event.data["wave"] == 0:
            kube = engine.driver("s1").client
            lease = kube.request("GET", lease_path)
            lease["spec"]["holderIdentity"] = "mallory@elsewhere:1/r-other"
            kube.request("PUT", lease_path, body=lease)
            wait_for(lost.is_set, "the renewer to notice the lost lease", timeout=30)
            set_image_by_hand(w.fleet, "s1",
                              w.image("s1").split("@")[0].rsplit(":", 1)[0] + ":v3")

    engine.add_listener(take_s1)
    handler = Catch()
    logging.getLogger("console").addHandler(handler)
    try:
        result = engine.run(ReleaseRequest(tag="v2", strategy="canary"), _approve)
    finally:
        logging.getLogger("console").removeHandler(handler)
    assert lost.is_set()
    assert [e.data["error"] for e in w.recorder.of(Kind.CLUSTER_FAILED)] == []
    assert not w.recorder.of(Kind.CLUSTER_ROLLING_BACK)
    assert w.version("s1") == "v3" and w.version("p1") == "v1"
    assert result.exit_code != 0, result       # a lost lease starts no new cluster
