"""A stop another shard writes on the shard board while shard 1 is on its way into a
gate - after its last stop check, before the gate waits (the window `gate_view`'s board
read opens) - still ends the gate: rejected at once, the release `stopped`, and the
other shards' wait for shard 1's answer ends on the stop too. Shard 1 runs in this
process against the simulator over HTTP; shard 2 (no cluster in its slice) is its real
`ShardBoard`, beating, driven by the test."""

from __future__ import annotations

import threading
from typing import Any

from console.engine import ReleaseControl, ReleaseRequest
from console.engine.api import GateDecision, GateRequest, Outcome, wait_for_approval
from console.engine.shards import ShardBoard
from console.events import Event, Kind
from console.locks import shards as wire
from console.plan import shard_of
from tests.waiting import wait_for

# Two clusters of shard 1 of 2 (sha256 slices): wave 1 and, after a gate, wave 2.
IDS = [c for c in (f"c{i}" for i in range(40)) if shard_of(c, 2) == 1][:2]
RID = "r-gate-stop"
WHY = "shard 2/2 aborted by test"


def test_a_stop_that_comes_while_a_shard_enters_a_gate_rejects_it_everywhere(world):
    w = world(IDS, strategies={"two": {"waves": [[IDS[0]], [IDS[1]]], "gates": True,
                                       "max_parallel": 1}},
              readiness_delay=0.2, jitter=0.0, seed=5)
    engine = w.engine()
    engine.driver(sorted(IDS)[0]).ensure_namespace()   # the board's cluster
    # Shard 2: finished its (empty) waves, beating so shard 1 never finds it gone.
    other = ShardBoard(engine, RID, 2, 2, sorted(IDS)[0], 4)
    other.publish(wave=0)
    other.start_beating()

    def beats_of_shard_1() -> int:
        board = wire.read(other.kube, other.namespace, other.name, RID, 10)
        return int(((board.get("shards") or {}).get("1") or {}).get("beat") or 0)

    forced = threading.Event()

    def in_the_window(event: Event) -> None:
        # On shard 1's wave thread, past its stop check, before the gate waits: shard
        # 2 stops the release, and shard 1's heartbeat thread takes that stop in (a
        # beat published after the one that read the stop) while the gate is not open.
        if event.kind is Kind.GATE_WAITING and not forced.is_set():
            other.stop_all(WHY)
            seen = beats_of_shard_1()
            wait_for(lambda: beats_of_shard_1() >= seen + 2, timeout=60,
                     what="two heartbeats of shard 1 after the stop")
            forced.set()
    engine.add_listener(in_the_window)
    control = ReleaseControl()
    done: dict[str, Any] = {}
    request = ReleaseRequest(tag="v2", strategy="two", shard=(1, 2), release_id=RID,
                             shard_timeout=4)   # a heartbeat every second
    runner = threading.Thread(target=lambda: done.setdefault(
        "r", engine.run(request, wait_for_approval(control, 30), control)), daemon=True)
    try:
        runner.start()
        # Nobody approves or rejects: only the stop can end this gate (the approver's
        # own timeout, 30 s, would end it "gate timeout" - the defect).
        runner.join(90)
        assert forced.is_set(), w.recorder.kinds()
        decided = w.recorder.of(Kind.GATE_DECIDED)
        assert [(e.data["decision"], e.data["by"]) for e in decided] == [("reject", WHY)]
        result = done["r"]
        assert (result.outcome, result.exit_code) == ("stopped", 3), result.message
        assert WHY in result.message
        outcomes = {c.cluster: c.outcome for c in result.clusters}
        assert outcomes == {IDS[0]: "healthy", IDS[1]: "skipped"}, outcomes
        assert w.version(IDS[1]) != "v2"
        # Shard 2 at the same gate: shard 1 wrote no answer (it asked no one); the
        # stop on the board is its answer, at once - not shard 1's end, nor a timeout.
        answer = other.approver(lambda _r: None)(GateRequest(RID, 0, (), (IDS[1],)))
        assert (answer.decision, answer.by) == (GateDecision.REJECT, WHY)
    finally:
        control.abort(by="test")
        runner.join(60)
        other.close(Outcome.STOPPED, WHY)
