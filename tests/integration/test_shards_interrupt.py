"""Ctrl-C of one shard of a release run as 3 shards (`deploy --shard K/3`, 3 real
processes against one simulated fleet and one bare Git ledger remote): the interrupted
shard writes its stop on the shard board at once, and the other shards start no new
cluster from then on - within a heartbeat, mid-wave (this release has one wave, so no
barrier would ever stop them) - while their running rollouts finish."""

from __future__ import annotations

import signal
import time

from tests.integration.conftest import wait_for
from tests.integration.test_shard_control import start, stop
from tests.integration.test_shards import IDS, bare, remote_release, shard_configs
from tests.integration.test_shards_board import told

# One wave, one rollout at a time per shard. Slices (sha256): shard 1 c0, c2, c7;
# shard 2 c4, c5, c6; shard 3 c1, c3, c8 - each starts the first of its own.
FIRST = {1: "c0", 2: "c4", 3: "c1"}
BEAT = 2.0       # s between heartbeats with --shard-timeout 8 (`ShardBoard.beat`)
# The docs promise a stop within a heartbeat; on a loaded shared machine the signal,
# the stop's write on the board, the others' read and their skips take time of their own.
MARGIN = 15.0


def signal_masks(pid: int) -> dict[str, str]:
    """The process's ignored, blocked and caught signal masks (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in status)
                if k in ("SigIgn", "SigBlk", "SigCgt")}


def test_ctrl_c_of_one_shard_stops_new_starts_in_the_others_within_a_heartbeat(world,
                                                                               tmp_path):
    w = world(IDS, strategies={"one": {"waves": [IDS], "max_parallel": 1}},
              readiness_delay=0.2, jitter=0.0, seed=23)
    w.deploy_everywhere("v1")
    for cid in FIRST.values():
        # Their v2 pods stay not Ready until let go: each shard is mid-rollout, with
        # two clusters still to start, when shard 3 is interrupted.
        w.fleet.set_faults(cid, hold_ready=["v2"])
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    rid = "r-shards-sigint"
    # --shard-timeout 8: a heartbeat every 2 s.
    shards = start(configs, tmp_path, rid, "--strategy", "one", "--shard-timeout", "8")
    try:
        wait_for(lambda: all(s.kinds("cluster_started") for s in shards), timeout=180,
                 what="every shard rolling out its first cluster")
        # What the interrupted shard does with SIGINT (bit 2 of the masks), for a failure.
        masks = signal_masks(shards[2].proc.pid)
        interrupted, since = time.time(), time.monotonic()
        shards[2].proc.send_signal(signal.SIGINT)

        def others_stopped() -> bool:
            return all(len(s.kinds("cluster_skipped")) == 2 for s in shards[:2])
        wait_for(others_stopped, timeout=120, what="shards 1 and 2 to skip the rest")
        took = max(e["ts"] for s in shards[:2] for e in s.kinds("cluster_skipped")) \
            - interrupted
        for cid in (FIRST[1], FIRST[2]):
            w.fleet.set_faults(cid, hold_ready=[])
        codes = [s.finish(timeout=180) for s in shards]
    finally:
        stop(shards)
    print(f"\nCtrl-C of shard 3 to the others' skips: {took:.2f}s")
    # (A clean-clone run once saw 59.93 s, alone, with nothing to tell why: every
    # shard's events, stderr and the board say it now.)
    story = f"shard 3's signal masks: {masks}\n" + told(w, shards, since, ("c0",))
    assert took < BEAT + MARGIN, f"the others skipped {took:.2f}s after the Ctrl-C\n{story}"
    assert codes == [3, 3, 3], story
    assert shards[2].kinds("release_finished")[-1]["outcome"] == "aborted"
    for s in shards[:2]:
        # Only the first cluster ever started, and it finished; the rest skipped,
        # naming the interrupted shard.
        assert [e["cluster"] for e in s.kinds("cluster_started")] == [FIRST[s.k]], s.k
        assert [e["cluster"] for e in s.kinds("cluster_healthy")] == [FIRST[s.k]], s.k
        for skipped in s.kinds("cluster_skipped"):
            assert "shard 3/3 aborted" in skipped["reason"], skipped
        end = s.kinds("release_finished")[-1]
        assert end["outcome"] == "stopped" and "shard 3/3 aborted" in end["detail"], end
    release = remote_release(remote, tmp_path, w.config.app.name, rid)
    outcomes = {c.cluster: c.outcome for c in release.clusters}
    assert outcomes["c0"] == outcomes["c4"] == "healthy", outcomes
    assert [outcomes[c] for c in ("c2", "c7", "c5", "c6")] == ["skipped"] * 4, outcomes
    assert release.outcome != "ok"
