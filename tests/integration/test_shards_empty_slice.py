"""A shard with no cluster in its slice is still steered (`deploy --shard K/N`, 3 real
processes against one simulated fleet and one bare Git ledger remote): it listens on its
own Lease on the shard board's cluster, so shard 1 with an empty slice waits for
`release-console control RELEASE_ID approve` (`--wait-for-approval`) and takes it - the
person named on the board's cluster, as `control` names them - and a pause reaches it
with the others."""

from __future__ import annotations

from console.engine.follow import snapshot
from console.plan import shard_of
from tests.integration.conftest import wait_for
from tests.integration.test_shard_control import start, stop
from tests.integration.test_shards import bare, board_of, remote_release, shard_configs
from tests.integration.test_steering import control

# sha256 slices of 3: c1 3, c3 3, c4 2, c5 2, c6 2, c8 3 - none is shard 1's.
IDS = ["c1", "c3", "c4", "c5", "c6", "c8"]
WAVES = [["c1"], ["c3", "c4"], ["c5", "c6", "c8"]]
STRATEGIES = {"three": {"waves": WAVES, "gates": True, "max_parallel": 3}}
# The simulator names the same credentials on cluster X `...:X-admin`; the board is on
# c8 (`--shard-board`), not on c1, the first target (which wave 1 finishes first).
BOARD_ADMIN = "system:serviceaccount:kube-system:c8-admin"


def test_shard_1_with_an_empty_slice_is_approved_through_control(world, tmp_path):
    assert {shard_of(c, 3) for c in IDS} == {2, 3}
    w = world(IDS, strategies=STRATEGIES, readiness_delay=0.3, jitter=0.0, seed=17)
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    rid = "r-empty-1"
    shards = start(configs, tmp_path, rid, "--strategy", "three", "--shard-board", "c8",
                   first=("--wait-for-approval",))
    try:
        wait_for(lambda: shards[0].kinds("gate_waiting") or shards[0].proc.poll() is not None,
                 timeout=180, what="the first gate")
        assert shards[0].kinds("gate_waiting"), shards[0].err[-2000:]
        # Every shard is reached, shard 1 too (it holds no cluster's lease).
        paused = control(w.config_path, rid, "pause")
        assert paused.returncode == 0, paused.stderr
        assert "(shards 1/3, 2/3, 3/3)" in paused.stdout, paused.stdout
        # Followers see every shard paused, shard 1 too (before: its listening lease on
        # the board's cluster was not read, and `paused_shards` left it out).
        state = snapshot(w.engine(), rid, None).steering
        assert state.get("paused_shards") == ["1/3", "2/3", "3/3"], state
        assert state.get("shards") == ["1/3", "2/3", "3/3"], state
        resumed = control(w.config_path, rid, "resume")
        assert resumed.returncode == 0, resumed.stderr
        approved = control(w.config_path, rid, "approve")
        assert approved.returncode == 0, approved.stderr
        assert "(shard 1/3)" in approved.stdout, approved.stdout
        wait_for(lambda: [e for e in shards[0].kinds("gate_waiting") if e["wave"] == 2],
                 timeout=180, what="the second gate")
        assert control(w.config_path, rid, "approve").returncode == 0
        codes = [s.finish() for s in shards]
    finally:
        stop(shards)
    assert codes == [0, 0, 0], [(s.k, s.err[-2000:]) for s in shards]
    assert [w.version(c) for c in IDS] == ["v2"] * len(IDS)
    # Each shard recorded its board (c8) on the default one (c1) and took it off again.
    assert (board_of(w, "c1").get(rid), board_of(w, "c8").get(rid)) == (None, None)
    # Named on the board's cluster: where the shard listens, and where `control` asked
    # who the person is.
    decided = shards[0].kinds("gate_decided")
    assert [d["decision"] for d in decided] == ["approve", "approve"], decided
    assert all(d["by"] == BOARD_ADMIN for d in decided), decided
    assert not shards[0].kinds("cluster_started")
    release = remote_release(remote, tmp_path, w.config.app.name, rid)
    assert {c.cluster: c.outcome for c in release.clusters} == {c: "healthy" for c in IDS}
    assert release.outcome == "ok"

    # Its terminal's (here --yes) approval names the person there too, as `control` does.
    shards = start(configs, tmp_path, "r-empty-2", "--strategy", "three", "--tag", "v3",
                   "--shard-board", "c8", first=("--yes",))
    try:
        codes = [s.finish() for s in shards]
    finally:
        stop(shards)
    assert codes == [0, 0, 0], [(s.k, s.err[-2000:]) for s in shards]
    decided = shards[0].kinds("gate_decided")
    assert len(decided) == 2 and all(d["by"].startswith(f"{BOARD_ADMIN} (") for d in decided), \
        decided


def test_the_consoles_approve_names_the_person_on_the_first_cluster_shard_1_holds(world,
                                                                                   tmp_path):
    """The console's `a` on a followed sharded release (`EngineProcess.steer`, what the
    follow screen calls) names the person on the first cluster shard 1 holds - c2 - as
    `control` does (issue 15's rule), not on the release's first target (c1, shard 3's)."""
    from console.engine.remote import EngineProcess
    ids = [f"c{i}" for i in range(1, 9)]
    assert shard_of("c1", 3) == 3 and sorted(c for c in ids if shard_of(c, 3) == 1) == \
        ["c2", "c7"]
    w = world(ids, strategies={"two": {"waves": [["c1", "c2"], ids[2:]], "gates": True}},
              readiness_delay=0.3, jitter=0.0, seed=19)
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    rid = "r-console-a"
    shards = start(configs, tmp_path, rid, "--strategy", "two",
                   first=("--wait-for-approval",))
    console = EngineProcess(w.config_path, on_events=lambda _batch: None,
                            approver=w.approve, on_warning=lambda _text: None)
    try:
        console.wait_ready()
        wait_for(lambda: shards[0].kinds("gate_waiting") or shards[0].proc.poll() is not None,
                 timeout=180, what="the gate")
        assert shards[0].kinds("gate_waiting"), shards[0].err[-2000:]
        ack = console.steer(rid, "approve")
        assert ack.ok and "(shard 1/3)" in ack.detail, ack
        codes = [s.finish() for s in shards]
    finally:
        console.close()
        stop(shards)
    assert codes == [0, 0, 0], [(s.k, s.err[-2000:]) for s in shards]
    decided = shards[0].kinds("gate_decided")
    assert [d["by"] for d in decided] == ["system:serviceaccount:kube-system:c2-admin"], \
        decided
