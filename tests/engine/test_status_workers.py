"""`release-console status` of a big fleet reads its clusters in several processes
(`console.cli.status_workers`): the same statuses, the same per-cluster errors, in the
fleet file's order, each cluster read once, nothing left behind.

The reading runs in a fresh interpreter (a forked worker needs a process without
threads, and the test's simulator runs in a thread of this one); it talks to the
simulated clusters over HTTP through the real client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from console.cli.status_workers import processes_for
from console.config import load
from tests.fleets import REPO

READ = r"""
import dataclasses, json, os, signal, sys, time
from console.cli.status_workers import FleetReading
from console.config import load
from console.engine import Engine

config_path, record, processes, die_in_worker, how = sys.argv[1:6]
parent = os.getpid()
config = load(config_path)


def recording(engine):
    def build(cid):
        with open(record, "a") as out:
            out.write(f"{os.getpid()} {cid}\n")
        if cid == die_in_worker and os.getpid() != parent:
            if how == "stop":     # a worker that hangs as a whole (stopped, swapped out)
                os.kill(os.getpid(), signal.SIGSTOP)
                time.sleep(3600)  # (the stop takes the other threads a moment later)
            os._exit(3)           # a worker that dies mid-share (OOM, a crash)
        return engine.build_driver(cid)
    return build


def statuses(count):
    engine = Engine(config, status_timeout=1.0)
    engine._driver_factory = recording(engine)
    try:
        return [dataclasses.asdict(s) for s in FleetReading(engine, count).statuses()]
    finally:
        engine.close()


print(json.dumps({"spread": statuses(int(processes)), "alone": statuses(1),
                  "parent": parent}))
"""


def read(w: Any, tmp_path: Path, processes: int, die_in_worker: str = "",
         how: str = "exit") -> dict[str, Any]:
    """Run READ in a fresh interpreter (its temp files in a directory of its own)."""
    record = tmp_path / f"record-{processes}-{die_in_worker}-{how}"
    temp = tmp_path / f"tmp-{processes}-{die_in_worker}-{how}"
    temp.mkdir()
    done = subprocess.run([sys.executable, "-c", READ, str(w.config_path), str(record),
                           str(processes), die_in_worker, how], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "TMPDIR": str(temp)}, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    lines = [line.split() for line in record.read_text().splitlines()]
    result["reads"] = lines
    # Every worker wrote its clusters' credential files in the parent's private
    # directory, which the parent removed as it exited: nothing is left.
    result["left"] = sorted(p.name for p in temp.iterdir())
    return result


def test_a_fleet_read_in_three_processes_gives_what_one_process_gives(world, tmp_path):
    """Healthy, not deployed, refused (403), unreachable and timed-out clusters: each has
    the status and error text a one-process reading gives, in the fleet file's order,
    read once, by three processes."""
    ids = [f"c{n}" for n in range(9)]
    w = world(ids)
    w.deploy_everywhere("v1", ids[:7])
    w.fleet.set_faults("c2", error_rate=1.0, error_codes=[403])
    w.fleet.set_faults("c3", unreachable=True)
    w.fleet.set_faults("c4", latency=3.0)          # longer than the 1 s timeout
    result = read(w, tmp_path, 3)

    assert result["spread"] == result["alone"]
    by_cluster = {s["cluster"]: s for s in result["spread"]}
    assert [s["cluster"] for s in result["spread"]] == ids
    assert [cid for cid in ids if by_cluster[cid]["reachable"]] == \
        ["c0", "c1", "c5", "c6", "c7", "c8"]
    assert by_cluster["c0"]["version"] == "v1" and by_cluster["c7"]["version"] is None
    assert by_cluster["c2"]["error"].startswith("API error 403"), by_cluster["c2"]
    assert "connection refused" in by_cluster["c3"]["error"], by_cluster["c3"]
    assert "timed out waiting for the API server" in by_cluster["c4"]["error"], by_cluster["c4"]

    spread = result["reads"][:len(ids)]
    assert sorted(cid for _, cid in spread) == ids                    # each read once
    pids = Counter(pid for pid, _ in spread)
    assert len(pids) == 3 and set(pids.values()) == {3}, pids         # dealt over three
    assert str(result["parent"]) in pids
    assert result["left"] == []


def test_a_worker_that_dies_has_its_share_read_by_the_parent(world, tmp_path):
    """A worker dying mid-share (killed, crashed) costs no cluster its status: the parent
    reads that share again."""
    ids = [f"c{n}" for n in range(6)]
    w = world(ids)
    w.deploy_everywhere("v1")
    result = read(w, tmp_path, 2, die_in_worker="c3")

    assert result["spread"] == result["alone"]
    assert [(s["cluster"], s["reachable"], s["version"]) for s in result["spread"]] == \
        [(cid, True, "v1") for cid in ids]
    parent = str(result["parent"])
    again = [cid for pid, cid in result["reads"][:-len(ids)] if pid == parent]
    assert sorted(again) == ["c0", "c1", "c2", "c3", "c4", "c5"], result["reads"]
    assert result["left"] == []


def test_a_worker_that_hangs_is_killed_and_its_clusters_have_no_answer(world, tmp_path):
    """A worker that stops as a whole (not one of its reads: those end at their own
    bound) is killed once every read's bound and a margin passed; its clusters are "no
    answer", the others read, and the parent exits (no worker is left behind)."""
    ids = [f"c{n}" for n in range(4)]
    w = world(ids)
    w.deploy_everywhere("v1")
    began = time.monotonic()
    result = read(w, tmp_path, 2, die_in_worker="c1", how="stop")
    took = time.monotonic() - began

    spread = {s["cluster"]: s for s in result["spread"]}
    assert [(cid, spread[cid]["reachable"]) for cid in ids] == \
        [("c0", True), ("c1", False), ("c2", True), ("c3", False)], (result["reads"], took)
    # The worker's share (c1, c3): one round of reads, each bound 1.0 * 2 + 2 s, + 10 s.
    assert spread["c1"]["error"] == spread["c3"]["error"] == "no answer within 4s"
    assert took < 14 + 60, took
    worker = {pid for pid, cid in result["reads"] if cid == "c1"} - {str(result["parent"])}
    assert len(worker) == 1
    assert not Path(f"/proc/{worker.pop()}").exists()      # killed and reaped
    assert result["left"] == []


def fleet(tmp_path: Path, count: int, vault: bool = False) -> Any:
    """A loaded fleet file of `count` clusters (never contacted)."""
    lines = ["app:", "  name: user-service", "  image: registry.example.com/user-service",
             f"  manifests: {REPO / 'deploy' / 'user-service'}", "clusters:"]
    for n in range(count):
        source = "{vault: true}" if vault and n == count - 1 else \
            "{kubeconfig: c%d.yaml}" % n
        lines.append(f"  - {{id: c{n}, credentials: {source}}}")
    if vault:
        lines += ["vault: {addr: 'https://127.0.0.1:8200', path_pattern: 'kv/clusters/{cluster}'}"]
    path = tmp_path / f"fleet-{count}-{vault}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load(path)


def test_how_many_processes_read_a_fleet(tmp_path):
    """One process per CPU, at least 64 clusters each, none for a fleet with Vault
    credentials (each process would log in: an AppRole secret id may allow few uses)
    or while this process runs threads (the simulator's, here: forking it is unsafe)."""
    assert processes_for(fleet(tmp_path, 127), cpus=2, threads=1) == 1
    assert processes_for(fleet(tmp_path, 128), cpus=2, threads=1) == 2
    assert processes_for(fleet(tmp_path, 1000), cpus=4, threads=1) == 4
    assert processes_for(fleet(tmp_path, 200), cpus=4, threads=1) == 3
    assert processes_for(fleet(tmp_path, 1000, vault=True), cpus=4, threads=1) == 1
    assert processes_for(fleet(tmp_path, 1000), cpus=4, threads=2) == 1
    # A count asked for (FleetReading(engine, 3)) is given, except where a fork is unsafe.
    assert processes_for(fleet(tmp_path, 100), cpus=1, threads=1, wanted=3) == 3
    assert processes_for(fleet(tmp_path, 1000), cpus=4, threads=2, wanted=3) == 1


def test_a_cgroup_cpu_quota_caps_the_readers(tmp_path):
    """A container limited to fewer CPUs than the node has (cgroup v2 `cpu.max`) gets as
    many readers as its quota, rounded up; no limit, or none readable, leaves the
    process's CPUs."""
    import os
    from console.cli.status_workers import usable_cpus
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    assert usable_cpus(str(cpu_max)) == 1
    cpu_max.write_text("150000 100000\n")
    assert usable_cpus(str(cpu_max)) == min(affinity, 2)
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(str(cpu_max)) == affinity
    assert usable_cpus(str(tmp_path / "none")) == affinity
