"""A gate of a release run as shards lists the other shards' finished clusters from
what they publish on the shard board - each names at most 200 that did not end healthy.
Past that the list is cut: the gate question says how many it could not list
(`GateRequest.unlisted`) and followers see it, while the counts stay exact. Through a
real board Lease on a simulated cluster over HTTP."""

from __future__ import annotations

from console.engine import Engine
from console.engine.api import GateAnswer, GateDecision, GateRequest
from console.engine.shards import NAMED, ShardBoard
from console.locks import shards as wire
from console.plan import Plan, Wave, shard_of


def test_a_gate_says_how_many_clusters_it_could_not_list(world):
    w = world(["a"])
    # Shard 2's wave 1: 260 clusters that all failed; it named the first NAMED.
    theirs = [c for c in (f"x{i}" for i in range(2000)) if shard_of(c, 2) == 2][:260]
    mine = [c for c in (f"y{i}" for i in range(100)) if shard_of(c, 2) == 1][:3]
    whole = Plan("canary", (Wave(0, tuple(mine + theirs), False), Wave(1, ("z",), True)),
                 max_parallel=10, max_failures=1000, stop_on_first_failure=False,
                 targets=tuple(mine + theirs + ["z"]))
    engine = Engine(w.config)
    try:
        engine.driver("a").ensure_namespace()     # as a first release makes it
        board = ShardBoard(engine, "r-cut", 1, 2, "a", 30)
        board.whole, board.tag = whole, "v2"
        board.publish(wave=0)
        entry = {"wave": 0, "beat": 3, "failures": 260,
                 "results": {"counts": {"failed": 260},
                             "named": {c: ["failed", "crash"] for c in theirs[:NAMED]}}}

        def shard_2(b: dict) -> None:
            b.setdefault("shards", {})["2"] = entry
        driver = engine.driver("a")
        wire.update(driver.client, driver.namespace, board.name, "r-cut", shard_2, 10)

        results, following, counts = board.gate_view(1, [])
        assert counts == {"failed": 260}                       # exact
        assert [r.cluster for r in results] == theirs[:NAMED]  # the named ones, in order
        asked: list[GateRequest] = []

        def own(request: GateRequest) -> GateAnswer:
            asked.append(request)
            return GateAnswer(GateDecision.APPROVE, by="alice")
        request = GateRequest("r-cut", 0, tuple(results), following)
        assert board.approver(own)(request).decision is GateDecision.APPROVE
        assert asked[0].unlisted == 260 - NAMED and board.unlisted == 260 - NAMED
    finally:
        engine.close()
