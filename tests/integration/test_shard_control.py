"""Steering a release run as 3 shards (`deploy --shard K/3`, 3 real processes against one
simulated fleet and one bare Git ledger remote) from outside with `release-console
control`: every shard listens for its own clusters - pause and resume are acknowledged
by all three and hold new starts everywhere, skip and retry are taken by the shard that
owns the cluster, approve by shard 1 (the gate shard), and an abort stops every shard
mid-wave, not at the next wave boundary. Prints how long each request took to reach
each shard (`-s`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.integration.conftest import wait_for
from tests.integration.test_shards import (IDS, STRATEGIES, Shard, bare, remote_release,
                                           shard_configs)
from tests.integration.test_steering import control


def start(configs, tmp_path, rid: str, *extra: str, first: tuple[str, ...] = ()) -> list[Shard]:
    return [Shard(config, tmp_path, k, "--tag", "v2", "--release-id", rid, *extra,
                  *(first if k == 1 else ()))
            for k, config in enumerate(configs, 1)]


def reached(shards: list[Shard], kind: str, since: float, **data) -> dict[int, float]:
    """Per shard, seconds from `since` to its first `kind` event (with `data`) after it."""
    found = {}
    for s in shards:
        times = [e["ts"] for e in s.kinds(kind) if e["ts"] >= since - 0.5
                 and all(e.get(k) == v for k, v in data.items())]
        if times:
            found[s.k] = round(min(times) - since, 2)
    return found


def follow_once(w, rid: str) -> list[dict]:
    """`release-console follow RID --once --json`: its lines."""
    followed = subprocess.run(
        [sys.executable, "-m", "console", "follow", rid, "--once", "--json", "--config",
         str(w.config_path)], capture_output=True, text=True, timeout=120)
    assert followed.returncode == 0, followed.stderr
    return [json.loads(line) for line in followed.stdout.splitlines() if line]


def stop(shards: list[Shard]) -> None:
    for s in shards:
        if s.proc.poll() is None:
            s.proc.kill()
        s.finish(timeout=30)


def test_every_shard_takes_pause_resume_skip_and_retry_for_its_own_clusters(world, tmp_path):
    # Owners (sha256): wave 1 c0 1, c1 3, c2 1; wave 2 c3 3, c4 2, c5 2; wave 3 c6 2,
    # c7 1, c8 3 (asserted in test_shards.py).
    w = world(IDS, strategies=STRATEGIES, readiness_delay=0.3, jitter=0.0, seed=11)
    w.deploy_everywhere("v1")
    w.fleet.set_faults("c4", crash=["v2"])        # shard 2's: fails, then is retried
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    rid = "r-shards-steer"
    shards = start(configs, tmp_path, rid, "--strategy", "three", "--max-failures", "1",
                   "--fail-fast-grace", "0.3", first=("--wait-for-approval",))
    figures = {}
    try:
        wait_for(lambda: shards[0].kinds("gate_waiting"), timeout=180, what="the first gate")
        # The gate is the whole release's: every shard's results, the whole next wave -
        # in the event (and the line `deploy` prints from it) and for followers.
        gate = shards[0].kinds("gate_waiting")[0]
        assert gate["clusters"] == ["c3", "c4", "c5"] and gate["finished"] == {"healthy": 3}
        assert gate["message"].endswith("c3, c4, c5 (every shard's waves so far: 3 healthy)")
        shown = [line["gate"] for line in follow_once(w, rid) if "gate" in line]
        assert shown and shown[0]["clusters"] == ["c3", "c4", "c5"], shown
        assert shown[0]["finished"] == {"healthy": 3}, shown
        since = time.time()
        paused = control(w.config_path, rid, "pause")
        figures["pause: control exit"] = round(time.time() - since, 2)
        assert paused.returncode == 0, paused.stderr
        assert "(shards 1/3, 2/3, 3/3)" in paused.stdout, paused.stdout
        wait_for(lambda: all(s.kinds("paused") for s in shards), what="every shard paused")
        figures["pause: to each shard"] = reached(shards, "paused", since)
        # Followers see one release, paused (every shard's state merged into one).
        assert {"release": rid, "paused": True} in follow_once(w, rid)

        since = time.time()
        skipped = control(w.config_path, rid, "skip", "c3")           # shard 3's
        figures["skip c3: control exit"] = round(time.time() - since, 2)
        assert skipped.returncode == 0, skipped.stderr
        assert "skip c3" in skipped.stdout and "(shard 3/3)" in skipped.stdout
        figures["skip c3: to shard 3"] = reached(shards, "steered", since, action="skip")
        assert list(figures["skip c3: to shard 3"]) == [3]           # only its owner took it
        again = control(w.config_path, rid, "skip", "c3")
        assert again.returncode == 2 and "to be skipped already" in again.stderr
        assert "shard 3/3" in again.stderr

        approved = control(w.config_path, rid, "approve")
        assert approved.returncode == 0, approved.stderr
        assert "(shard 1/3)" in approved.stdout
        # Paused: shard 2 begins wave 2 but starts none of its clusters until resumed.
        wait_for(lambda: [e for e in shards[1].kinds("wave_started") if e["wave"] == 1],
                 timeout=120, what="shard 2 at wave 2")
        resume_at = time.time()
        resumed = control(w.config_path, rid, "resume")
        assert resumed.returncode == 0, resumed.stderr
        assert "(shards 1/3, 2/3, 3/3)" in resumed.stdout, resumed.stdout
        wait_for(lambda: [e for e in shards[1].kinds("wave_finished") if e["wave"] == 1],
                 timeout=120, what="shard 2's wave 2 to end (c4 failed)")
        wave2 = [e for s in shards for e in s.kinds("cluster_started")
                 if e["cluster"] in ("c3", "c4", "c5")]
        assert sorted(e["cluster"] for e in wave2) == ["c4", "c5"]   # c3 skipped
        assert all(e["ts"] >= resume_at for e in wave2), (resume_at, wave2)

        w.fleet.set_faults("c4", crash=[])
        since = time.time()
        retried = control(w.config_path, rid, "retry", "c4")          # shard 2's
        figures["retry c4: control exit"] = round(time.time() - since, 2)
        assert retried.returncode == 0, retried.stderr
        assert "retry c4" in retried.stdout and "(shard 2/3)" in retried.stdout
        wait_for(lambda: [e for e in shards[0].kinds("gate_waiting") if e["wave"] == 2],
                 timeout=120, what="the second gate")
        second = [e for e in shards[0].kinds("gate_waiting") if e["wave"] == 2][0]
        assert second["clusters"] == ["c6", "c7", "c8"]
        # c3 (shard 3) skipped, c4 (shard 2) failed and rolled back: shard 1 shows both.
        assert second["finished"] == {"healthy": 4, "skipped": 1, "rolled_back": 1}, second
        assert control(w.config_path, rid, "approve").returncode == 0
        codes = [s.finish() for s in shards]
    finally:
        stop(shards)
    print("\nshard control latencies (s):", figures)
    assert codes == [0, 0, 0], [(s.k, s.err[-2000:]) for s in shards]
    assert {c: w.version(c) for c in IDS} == {**{c: "v2" for c in IDS}, "c3": "v1"}
    release = remote_release(remote, tmp_path, w.config.app.name, rid)
    outcomes = {c.cluster: c.outcome for c in release.clusters}
    assert outcomes == {**{c: "healthy" for c in IDS}, "c3": "skipped_by_operator"}, outcomes
    assert release.outcome == "ok"


def test_an_abort_stops_every_shard_mid_wave(world, tmp_path):
    # One wave of all nine clusters, each rollout far longer than the test: the abort
    # must reach every shard while its clusters roll out.
    w = world(IDS, strategies={"all": {"waves": [IDS], "max_parallel": 9}},
              readiness_delay=600.0, jitter=0.0, seed=13, rollout_timeout="900s")
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    rid = "r-shards-abort"
    shards = start(configs, tmp_path, rid, "--strategy", "all")
    try:
        # Every shard has clusters in the wave (c0..c8 spread over 1, 2, 3).
        wait_for(lambda: all(s.kinds("cluster_started") for s in shards), timeout=180,
                 what="every shard rolling out")
        since = time.time()
        aborted = control(w.config_path, rid, "abort")
        took = round(time.time() - since, 2)
        assert aborted.returncode == 0, aborted.stderr
        assert "(shards 1/3, 2/3, 3/3)" in aborted.stdout, aborted.stdout
        codes = [s.finish(timeout=180) for s in shards]
    finally:
        stop(shards)
    print(f"\nabort: control exit {took}s; to each shard's end (s):",
          reached(shards, "release_finished", since))
    assert codes == [3, 3, 3], [(s.k, s.err[-2000:]) for s in shards]
    for s in shards:
        assert s.kinds("release_finished")[-1]["outcome"] == "aborted", s.k
        assert not s.kinds("cluster_healthy"), s.k
