"""Bake time (issue 14, item 1): a healthy wave is watched for its bake time before its
gate opens (the last wave bakes too), and a cluster whose pods start crash-looping
during the bake fails there and is rolled back. On the simulator, whose crash fault set
while pods run makes them crash after they were Ready."""

from __future__ import annotations

from console.engine import GateAnswer, GateDecision, ReleaseRequest
from console.events import Kind
from console.history import Ledger

CANARY = {"canary": {"waves": [["s1"], ["p1"]], "gates": True, "bake": "3s"}}


def test_the_gate_opens_only_after_the_bake_and_the_last_wave_bakes_too(world):
    w = world(["s1", "p1"], strategies=CANARY, seed=21)
    w.deploy_everywhere("v1")
    asked: list[float] = []

    def approver(request) -> GateAnswer:
        asked.append(request.baked)     # the gate modal shows it: "baked 3s"
        return GateAnswer(GateDecision.APPROVE, by="test")

    result = w.release(ReleaseRequest(tag="v2", strategy="canary"), approver, session=True)
    assert result.exit_code == 0, result
    ledger = Ledger.for_config(w.config)   # the ledger records each wave's bake
    try:
        assert [(b["wave"], b["seconds"], b["ok"], b["completed"])
                for b in ledger.bakes(result.release_id)] == [(0, 3.0, True, True),
                                                             (1, 3.0, True, True)]
    finally:
        ledger.close()
    kinds = [e.kind for e in w.recorder.events if e.kind in (
        Kind.WAVE_BAKING, Kind.WAVE_BAKED, Kind.GATE_WAITING, Kind.RELEASE_FINISHED)]
    assert kinds == [Kind.WAVE_BAKING, Kind.WAVE_BAKED, Kind.GATE_WAITING,
                     Kind.WAVE_BAKING, Kind.WAVE_BAKED, Kind.RELEASE_FINISHED]
    baking, baked = w.recorder.of(Kind.WAVE_BAKING), w.recorder.of(Kind.WAVE_BAKED)
    assert [(e.data["wave"], e.data["seconds"], e.data["clusters"]) for e in baking] == \
        [(0, 3.0, ["s1"]), (1, 3.0, ["p1"])]
    assert all(e.data["ok"] and e.data["completed"] for e in baked)
    gate = w.recorder.of(Kind.GATE_WAITING)[0]
    assert gate.ts >= baking[0].data["until"] and baked[0].ts - baking[0].ts >= 3.0
    assert asked == [3.0] and (w.version("s1"), w.version("p1")) == ("v2", "v2")


def test_a_cluster_crash_looping_during_the_bake_fails_and_is_rolled_back(world):
    w = world(["s1", "p1"], strategies=CANARY, seed=22)
    w.deploy_everywhere("v1")

    def crash_when_baking(event) -> None:
        # The canary was healthy; its pods start crash-looping once the bake began.
        if event.kind is Kind.WAVE_BAKING and event.data["wave"] == 0:
            w.fleet.set_faults("s1", crash=["v2"])

    w.recorder.events.clear()
    engine = w.engine()
    engine.add_listener(crash_when_baking)
    asked: list[object] = []
    try:
        result = engine.run(ReleaseRequest(tag="v2", strategy="canary"),
                            lambda req: asked.append(req) or GateAnswer(GateDecision.APPROVE))
    finally:
        engine.close()
    assert result.exit_code == 1, result
    outcomes = {c.cluster: (c.outcome.value, c.rolled_back_to) for c in result.clusters}
    assert outcomes == {"s1": ("rolled_back", "v1"), "p1": ("skipped", None)}
    failed = next(e for e in w.recorder.of(Kind.CLUSTER_FAILED) if e.cluster == "s1")
    assert "during the bake" in failed.data["error"]
    assert any(word in failed.data["error"] for word in ("restarts rose", "not Ready",
                                                         "unavailable"))
    baked = w.recorder.of(Kind.WAVE_BAKED)[0]
    assert (baked.data["ok"], baked.data["failed"]) == (False, ["s1"])
    assert asked == [] and not w.recorder.of(Kind.GATE_WAITING)   # never asked
    assert (w.version("s1"), w.version("p1")) == ("v1", "v1")


def set_image_by_hand(fleet, cid: str, image: str) -> None:
    """`kubectl set image` from another terminal: a strategic merge patch of the app's
    container, through the simulated cluster's API."""
    import ssl

    import httpx
    answer = httpx.patch(
        f"{fleet.url(cid)}/apis/apps/v1/namespaces/{cid}/deployments/user-service",
        headers={"Authorization": f"Bearer {fleet.admin_token(cid)}",
                 "Content-Type": "application/strategic-merge-patch+json"},
        json={"spec": {"template": {"spec": {"containers": [
            {"name": "user-service", "image": image}]}}}},
        verify=ssl.create_default_context(cafile=str(fleet.ca_file)), timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_change_made_between_healthy_and_the_bake_start_is_caught(world):
    # The baseline is what the console applied, not what the cluster shows when the bake
    # begins: an image swapped by hand right after healthy - and fully rolled out, Ready,
    # before the bake's first look - still fails the bake (it passed when the baseline
    # was read from the live cluster at bake start).
    from tests.waiting import wait_for
    w = world(["s1", "p1"], strategies=CANARY, seed=23)
    w.deploy_everywhere("v1")
    swapped: list[str] = []

    def swap_when_healthy(event) -> None:
        if event.kind is Kind.CLUSTER_HEALTHY and event.cluster == "s1" and not swapped:
            swapped.append(w.image("s1"))
            set_image_by_hand(w.fleet, "s1", w.image("s1").split(":")[0] + ":v3")
            # The engine's worker waits here: the bake cannot begin before the swap is
            # complete (every pod v3 and Ready, none of v2 left).
            wait_for(lambda: w.ready_pods("s1", "v3") == 2 and all(
                p["spec"]["containers"][0]["image"].endswith(":v3")
                for p in w.fleet.list("s1", "/pods", "s1")
                if not p["metadata"].get("deletionTimestamp")), "the hand-made v3 rollout")

    w.recorder.events.clear()
    engine = w.engine()
    engine.add_listener(swap_when_healthy)
    try:
        result = engine.run(ReleaseRequest(tag="v2", strategy="canary"),
                            lambda _req: GateAnswer(GateDecision.APPROVE, by="test"))
    finally:
        engine.close()
    assert swapped and "@sha256:" in swapped[0]       # the console applied a pinned v2
    assert result.exit_code == 1, result
    failed = next(e for e in w.recorder.of(Kind.CLUSTER_FAILED) if e.cluster == "s1")
    assert failed.data["error"] == (f"failed during the bake: image replaced: {swapped[0]} "
                                    f"-> {swapped[0].split(':')[0]}:v3"), failed.data
    outcomes = {c.cluster: (c.outcome.value, c.rolled_back_to) for c in result.clusters}
    assert outcomes == {"s1": ("rolled_back", "v1"), "p1": ("skipped", None)}
    assert (w.version("s1"), w.version("p1")) == ("v1", "v1")
