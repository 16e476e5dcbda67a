"""One release run as 3 shards (`release-console deploy --shard K/3`), as 3 real processes
against one simulated fleet and one bare Git ledger remote (each shard with its own
ledger clone, as 3 CI agents would have): every cluster released exactly once, the waves
global (no cluster of a wave starts before every shard finished the wave before, even a
shard with no cluster in it), one approval at a gate for all, the failure budget global,
a shard that dies fails the others' gate, and the ledger remote has every outcome after
the shards' concurrent pushes - read back as one release."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from console.history import Ledger
from console.plan import shard_of
from tests.integration.conftest import wait_for
from tests.integration.test_steering import Deploy

IDS = [f"c{i}" for i in range(9)]
# Shards of c0..c8 for N=3 (sha256): wave 1 -> 1,3,1 (shard 2 has none), wave 2 ->
# 3,2,2, wave 3 -> 2,1,3; asserted below, so a change of the rule shows here.
WAVES = [IDS[0:3], IDS[3:6], IDS[6:9]]
STRATEGIES = {"three": {"waves": WAVES, "gates": True, "max_parallel": 3}}


class Shard(Deploy):
    """`release-console deploy --json --shard K/3 ...` as a process; its events read by a
    thread, its stderr by another (`err`), so three chatty shards never fill a pipe."""

    def __init__(self, config: Path, cwd: Path, k: int, *args: str) -> None:
        self.k = k
        super().__init__(config, cwd, "--shard", f"{k}/3", *args)
        self.err = ""
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()

    def _read_err(self) -> None:
        self.err = self.proc.stderr.read()

    def finish(self, timeout: float = 240.0) -> int:
        code = super().finish(timeout)
        self._err.join(timeout=30)
        return code


def shard_configs(world_config: Path, remote: Path, tmp: Path) -> list[Path]:
    """The fleet file once per shard: the same fleet, each with its own ledger clone of
    the one remote (beside the original, so its relative kubeconfig paths hold)."""
    doc = yaml.safe_load(world_config.read_text())
    paths = []
    for k in (1, 2, 3):
        doc["app"]["history"] = {"path": str(tmp / f"ledger-{k}"), "remote": str(remote)}
        path = world_config.parent / f"clusters-shard{k}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths


def bare(tmp: Path) -> Path:
    path = tmp / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True, timeout=30)
    subprocess.run(["git", "-C", str(path), "symbolic-ref", "HEAD", "refs/heads/main"],
                   check=True, timeout=30)
    return path


def run_shards(configs: list[Path], tmp: Path, rid: str, *extra: str,
               yes_on_first: bool = True) -> list[Shard]:
    shards = []
    for k, config in enumerate(configs, 1):
        # Only shard 1 answers gates (--yes); the others have no approver of their own.
        args = ["--tag", "v2", "--strategy", "three", "--release-id", rid, *extra]
        if k == 1 and yes_on_first:
            args.append("--yes")
        shards.append(Shard(config, tmp, k, *args))
    return shards


def remote_release(remote: Path, tmp: Path, app: str, rid: str):
    """The release as a fresh clone of the remote reads it."""
    ledger = Ledger(tmp / "reader", app, remote=str(remote))
    try:
        found = ledger.releases(ids={rid})
    finally:
        ledger.close()
    assert len(found) == 1, found
    return found[0]


def board_of(w, cluster: str) -> dict:
    """Every release's board on the shard board Lease of `cluster` ({}: none, no lease)."""
    from console.engine import Engine
    from console.locks import control as wire
    from console.locks import shards as board_wire
    engine = Engine(w.config)
    try:
        driver = engine.driver(cluster)
        lease = wire.read(driver.client, driver.namespace,
                          board_wire.board_name(w.config.app.name), 10)
    finally:
        engine.close()
    return board_wire.boards(lease)


def test_three_shards_release_every_cluster_once_with_global_waves(world, tmp_path):
    assert [[shard_of(c, 3) for c in wave] for wave in WAVES] == \
        [[1, 3, 1], [3, 2, 2], [2, 1, 3]]
    w = world(IDS, strategies=STRATEGIES, readiness_delay=0.3, jitter=0.2, seed=5)
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    rid = "r-shards-ok"
    shards = run_shards(configs, tmp_path, rid)
    # `follow` from a fourth place (its own ledger clone of the remote) sees one release.
    doc = yaml.safe_load(configs[0].read_text())
    doc["app"]["history"]["path"] = str(tmp_path / "ledger-follow")
    follow_config = configs[0].parent / "clusters-follow.yaml"
    follow_config.write_text(yaml.safe_dump(doc, sort_keys=False))
    wait_for(lambda: any(s.kinds("cluster_started") for s in shards), timeout=120,
             what="a first cluster start")
    follow = subprocess.Popen([sys.executable, "-m", "console", "follow", rid, "--json",
                               "--interval", "0.5", "--config", str(follow_config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, cwd=tmp_path)
    codes = [s.finish() for s in shards]
    assert codes == [0, 0, 0], [(s.k, s.err[-2000:]) for s in shards]
    followed, follow_err = follow.communicate(timeout=120)
    assert follow.returncode == 0, follow_err
    lines = [json.loads(line) for line in followed.splitlines() if line]
    phases = {line["cluster"]: line["phase"] for line in lines if "cluster" in line}
    assert phases == {c: "healthy" for c in IDS}, lines
    assert lines[-1] == {"release": rid, "outcome": "ok"}

    assert [w.version(c) for c in IDS] == ["v2"] * 9
    # Each cluster started exactly once, by the shard its hash names.
    started = [(e["cluster"], s.k) for s in shards for e in s.kinds("cluster_started")]
    assert sorted(c for c, _ in started) == IDS
    assert all(shard_of(c, 3) == k for c, k in started)
    # Waves are global: every cluster of wave N+1 (in any shard) starts after every
    # cluster of wave N (in any shard) was healthy.
    healthy = {e["cluster"]: e["ts"] for s in shards for e in s.kinds("cluster_healthy")}
    start = {e["cluster"]: e["ts"] for s in shards for e in s.kinds("cluster_started")}
    for before, after in zip(WAVES, WAVES[1:]):
        assert max(healthy[c] for c in before) <= min(start[c] for c in after), \
            (before, after, healthy, start)
    # One approval for all: shard 1 was asked (--yes); the others took its answer.
    for s in shards:
        decided = s.kinds("gate_decided")
        assert [d["decision"] for d in decided] == ["approve", "approve"], s.k
        if s.k != 1:
            assert all("(via shard 1)" in d["by"] for d in decided), decided
    # One release id everywhere.
    assert {e["release"] for s in shards for e in s.events} == {rid}

    # The remote has every outcome after the three concurrent pushes, read as one release.
    release = remote_release(remote, tmp_path, w.config.app.name, rid)
    assert sorted(release.targets) == IDS
    assert {c.cluster: c.outcome for c in release.clusters} == {c: "healthy" for c in IDS}
    assert release.outcome == "ok" and release.finished
    # The last shard to end took the release's board off the lease (c0: first target).
    assert board_of(w, "c0") == {}


def test_a_failure_in_one_shard_stops_the_others_at_the_next_wave(world, tmp_path):
    w = world(IDS, strategies=STRATEGIES, readiness_delay=0.3, jitter=0.2, seed=7)
    w.deploy_everywhere("v1")
    # c1 is shard 3's only cluster of wave 1; shard 2 has none there.
    w.fleet.set_faults("c1", crash=["v2"])
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    rid = "r-shards-budget"
    shards = run_shards(configs, tmp_path, rid, "--max-failures", "0",
                        "--fail-fast-grace", "0.3")
    codes = [s.finish() for s in shards]
    assert codes == [1, 1, 1], [(s.k, s.err[-2000:]) for s in shards]
    started = sorted(e["cluster"] for s in shards for e in s.kinds("cluster_started"))
    assert started == ["c0", "c1", "c2"]          # nothing of wave 2 or 3, anywhere
    for s in shards:
        end = s.kinds("release_finished")[-1]
        assert end["detail"].startswith("failure budget spent: 1 failed"), (s.k, end)
    assert w.version("c1") == "v1"                 # rolled back
    assert [w.version(c) for c in IDS[3:]] == ["v1"] * 6
    release = remote_release(remote, tmp_path, w.config.app.name, rid)
    outcomes = {c.cluster: c.outcome for c in release.clusters}
    assert outcomes == {"c0": "healthy", "c1": "rolled_back", "c2": "healthy",
                        **{c: "skipped" for c in IDS[3:]}}, \
        (outcomes, [s.err[-1500:] for s in shards], subprocess.run(
            ["git", "-C", str(remote), "show", "main:history/user-service.jsonl"],
            capture_output=True, text=True).stdout)
    assert release.outcome == "failed"


def test_a_shard_that_dies_fails_the_gate_of_the_others(world, tmp_path):
    w = world(IDS, strategies=STRATEGIES, readiness_delay=1.0, jitter=0.0, seed=9)
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    rid = "r-shards-dead"
    shards = run_shards(configs, tmp_path, rid, "--shard-timeout", "6")
    # Shard 3 dies in the middle of wave 1 (its c1 rolling out).
    wait_for(lambda: shards[2].kinds("cluster_started"), timeout=120,
             what="shard 3 to start c1")
    os.kill(shards[2].proc.pid, signal.SIGKILL)
    codes = [s.finish() for s in shards[:2]]
    shards[2].finish(timeout=30)
    assert codes == [3, 3], [(s.k, s.err[-2000:]) for s in shards[:2]]
    for s in shards[:2]:
        end = s.kinds("release_finished")[-1]
        assert "shard 3/3 stopped reporting" in end["detail"], (s.k, end)
        assert "the gate before wave 2 fails" in end["detail"], (s.k, end)
    started = sorted(e["cluster"] for s in shards for e in s.kinds("cluster_started"))
    assert started == ["c0", "c1", "c2"]
    # Shard 3 was found gone, so the last of the other two to end cleaned the board up.
    assert board_of(w, "c0") == {}


def test_the_board_lives_where_every_shard_reaches_it(world, tmp_path):
    # Shard 2 cannot reach c0 (its kubeconfig for c0 points at a closed port), the
    # default board cluster (the first target in sorted order): it says so and stops,
    # nothing is touched anywhere; with --shard-board c4 (which every shard reaches)
    # the same release runs, and its board is taken off c4's lease at the end.
    w = world(IDS, strategies=STRATEGIES, readiness_delay=0.2, jitter=0.0, seed=3)
    remote = bare(tmp_path)
    configs = shard_configs(w.config_path, remote, tmp_path)
    doc = yaml.safe_load(configs[1].read_text())
    entry = next(c for c in doc["clusters"] if c["id"] == "c0")
    kubeconfig = yaml.safe_load((configs[1].parent / entry["credentials"]["kubeconfig"])
                                .read_text())
    for cluster in kubeconfig["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:1"
    broken = configs[1].parent / "c0-unreachable.yaml"
    broken.write_text(yaml.safe_dump(kubeconfig))
    entry["credentials"]["kubeconfig"] = broken.name
    configs[1].write_text(yaml.safe_dump(doc, sort_keys=False))

    shards = run_shards(configs, tmp_path, "r-board-1", "--shard-timeout", "5")
    codes = [s.finish() for s in shards]
    assert codes == [2, 2, 2], [(s.k, s.err[-2000:]) for s in shards]
    assert "shard 2/3 cannot reach the shard board on cluster 'c0' (the first target in " \
           "sorted order; --shard-board CLUSTER names another" in shards[1].err, shards[1].err
    for s in (shards[0], shards[2]):
        end = s.kinds("release_finished")[-1]
        assert "shard 2/3 stopped reporting (never reported: can it reach the shard " \
               "board on cluster 'c0', and was it given the same --shard-board?" \
            in end["detail"], (s.k, end)
    assert not [e for s in shards for e in s.kinds("cluster_started")]
    assert [w.version(c) for c in IDS] == [None] * 9

    shards = run_shards(configs, tmp_path, "r-board-2", "--shard-board", "c4")
    codes = [s.finish() for s in shards]
    assert codes == [0, 0, 0], [(s.k, s.err[-2000:]) for s in shards]
    assert [w.version(c) for c in IDS] == ["v2"] * 9
    assert board_of(w, "c4") == {}
    assert "r-board-2" not in board_of(w, "c0")


def test_bad_shard_flags_are_refused_before_anything_starts(world, tmp_path, capsys):
    from console.cli import main
    w = world(["a", "b"], strategies={"ab": {"waves": [["a"], ["b"]], "gates": True}})
    base = ["deploy", "--config", str(w.config_path), "--tag", "v2"]
    for args, said in ((["--shard", "4/3", "--release-id", "r-1"], "--shard 4/3"),
                       (["--shard", "two", "--release-id", "r-1"], "expected K/N"),
                       (["--shard", "1/3"], "--shard needs --release-id"),
                       (["--shard", "1/3", "--release-id", "r 1"], "not a valid release id"),
                       (["--shard", "1/3", "--release-id", "r-1", "--shard-board", "z"],
                        "--shard-board z: no such cluster"),
                       (["--shard-board", "a"], "--shard-board goes with --shard")):
        assert main(base + args) == 2, args
        assert said in capsys.readouterr().err, args
    assert w.version("a") is None and w.version("b") is None
    assert not (tmp_path / "history").exists()     # refused before the ledger opened
