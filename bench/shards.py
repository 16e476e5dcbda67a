"""Benchmark: one release run as N shards (`deploy --shard K/N`) against the same release
from one process, on one simulated fleet and one bare Git ledger remote.

    .venv/bin/python bench/shards.py [--clusters 60] [--shards 3] [--readiness 1]

The fleet (console.sim) runs in this process; the deploys run as child processes, each
shard with its own ledger clone of the one remote (as N CI agents would have). The
release has three gated waves (10%, 40%, 50% of the clusters), gates approved by shard 1
(`--yes`). Printed: wall time (first process start to last exit), first cluster start to
last cluster healthy, the gap between a wave's last healthy cluster and the next wave's
first start (the shard barrier's latency), and the CPU seconds of the deploy processes -
sharded (to v2) and from one process (to v3).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from console.sim import SimFleet  # noqa: E402

APP = "user-service"


def fleet_file(directory: Path, ids: list[str], waves: list[list[str]]) -> Path:
    doc = {"app": {"name": APP, "image": "registry.example.com/apps/user-service",
                   "manifests": str(REPO / "deploy" / "user-service"),
                   "namespace": "{cluster}", "rollout_timeout": "10m"},
           "defaults": {"values": {"replicas": 2, "resources": {
               "requests": {"cpu": "10m", "memory": "16Mi"}}}},
           "clusters": [{"id": cid, "groups": ["fleet"],
                         "credentials": {"kubeconfig": f"{cid}.yaml"}} for cid in ids],
           "strategies": {"waves": {"waves": waves, "gates": True,
                                    "max_parallel": max(len(w) for w in waves)}}}
    path = directory / "fleet-in.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def with_ledger(config: Path, name: str, history: dict[str, str]) -> Path:
    """The fleet file with its own ledger (beside it: relative kubeconfig paths hold)."""
    doc = yaml.safe_load(config.read_text())
    doc["app"]["history"] = history
    path = config.parent / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(commands: list[tuple[list[str], Path]]) -> dict[str, Any]:
    """Start every command at once; wait for all; their events, wall time and CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    # Output to files, not pipes: a shard blocked on a full pipe would hold every other
    # shard at the next wave.
    files = [(config.with_suffix(".out"), config.with_suffix(".err")) for _, config in commands]
    procs = []
    for (argv, config), (out, err) in zip(commands, files):
        with open(out, "w") as stdout, open(err, "w") as stderr:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "console", *argv, "--config", str(config), "--json"],
                stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(REPO)}))
    codes = [p.wait() for p in procs]
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if any(codes):
        raise SystemExit(f"exit codes {codes}: {[e.read_text()[-800:] for _, e in files]}")
    events = [json.loads(line) for out, _ in files for line in out.read_text().splitlines()
              if line]
    return {"wall": wall, "events": events,
            "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def figures(result: dict[str, Any], waves: list[list[str]]) -> dict[str, Any]:
    healthy = {e["cluster"]: e["ts"] for e in result["events"]
               if e["kind"] == "cluster_healthy"}
    started = {e["cluster"]: e["ts"] for e in result["events"]
               if e["kind"] == "cluster_started"}
    gaps = [min(started[c] for c in b) - max(healthy[c] for c in a)
            for a, b in zip(waves, waves[1:])]
    return {"wall": result["wall"], "span": max(healthy.values()) - min(started.values()),
            "gaps": gaps, "cpu": result["cpu"], "clusters": len(healthy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=60)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--readiness", type=float, default=1.0)
    args = parser.parse_args()
    ids = [f"c{i:04d}" for i in range(args.clusters)]
    a, b = max(1, args.clusters // 10), max(2, args.clusters // 2)
    waves = [ids[:a], ids[a:b], ids[b:]]
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        directory = Path(tmp)
        fleet = SimFleet(ids, readiness_delay=args.readiness, jitter=0.2, seed=1).start()
        try:
            config = fleet.write_kubeconfigs(directory / "fleet",
                                             config_path=fleet_file(directory, ids, waves))
            remote = directory / "remote.git"
            subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
            subprocess.run(["git", "-C", str(remote), "symbolic-ref", "HEAD",
                            "refs/heads/main"], check=True)
            n = args.shards
            sharded = run([(["deploy", "--tag", "v2", "--strategy", "waves", "--shard",
                             f"{k}/{n}", "--release-id", "r-bench-shards",
                             *(["--yes"] if k == 1 else [])],
                            with_ledger(config, f"shard{k}.yaml",
                                        {"path": str(directory / f"ledger{k}"),
                                         "remote": str(remote)}))
                           for k in range(1, n + 1)])
            solo = run([(["deploy", "--tag", "v3", "--strategy", "waves", "--yes"],
                         with_ledger(config, "solo.yaml",
                                     {"path": str(directory / "ledger-solo")}))])
        finally:
            fleet.stop()
    rows = [("", f"{args.shards} shards", "1 process")]
    s, o = figures(sharded, waves), figures(solo, waves)
    rows += [("clusters healthy", str(s["clusters"]), str(o["clusters"])),
             ("wall, processes start to last exit (s)", f"{s['wall']:.1f}", f"{o['wall']:.1f}"),
             ("first start to last healthy (s)", f"{s['span']:.1f}", f"{o['span']:.1f}"),
             ("wave gaps: last healthy to next first start (s)",
              ", ".join(f"{g:.2f}" for g in s["gaps"]), ", ".join(f"{g:.2f}" for g in o["gaps"])),
             ("CPU seconds (all deploy processes)", f"{s['cpu']:.1f}", f"{o['cpu']:.1f}")]
    width = max(len(r[0]) for r in rows)
    print(f"{args.clusters} clusters in waves of {[len(w) for w in waves]}, readiness "
          f"{args.readiness:g}s")
    for label, x, y in rows:
        print(f"{label:<{width}}  {x:>14}  {y:>14}")


if __name__ == "__main__":
    main()
