"""Benchmark: a paced parallel release - 200 simulated clusters, `max_starts: 20/10s`.

    .venv/bin/python bench/pacing.py [--clusters 200] [--pace 20/10s] [--readiness 0.5]

The fleet (console.sim) and the engine run in this process. The release is one parallel
wave (`max_parallel` = every cluster, so only pacing holds clusters back); the script
prints when each cluster's rollout really began (`cluster_started`) in buckets of the
window, the most starts seen in any sliding window (must not exceed N), how many clusters
were told `cluster_paced`, and the release's wall time against the floor pacing sets
(ceil(clusters / N) - 1 windows).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from console.config import load, parse_pace  # noqa: E402
from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest  # noqa: E402
from console.events import Event, Kind  # noqa: E402
from console.sim import SimFleet  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--pace", default="20/10s")
    parser.add_argument("--readiness", type=float, default=0.5)
    args = parser.parse_args()
    count, window = parse_pace(args.pace)
    ids = [f"c{n:03d}" for n in range(args.clusters)]
    events: list[Event] = []
    with tempfile.TemporaryDirectory() as tmp, \
            SimFleet(ids, readiness_delay=args.readiness, jitter=0.2) as fleet:
        work = Path(tmp)
        doc = {"app": {"name": "user-service", "image": "registry.example.com/apps/user-service",
                       "manifests": str(REPO / "deploy" / "user-service"),
                       "namespace": "{cluster}", "rollout_timeout": "10m",
                       "history": {"path": str(work / "history")}},
               "defaults": {"values": {"replicas": 1, "resources": {
                   "requests": {"cpu": "10m", "memory": "16Mi"}}}},
               "clusters": [{"id": c, "credentials": {"kubeconfig": f"{c}.yaml"}} for c in ids],
               "strategies": {"paced": {"waves": ["rest"], "max_parallel": len(ids),
                                        "max_starts": args.pace}}}
        source = work / "fleet-in.yaml"
        source.write_text(yaml.safe_dump(doc, sort_keys=False))
        config = load(fleet.write_kubeconfigs(work / "fleet", config_path=source))
        engine = Engine(config, [events.append], grace=2.0)
        began = time.time()
        try:
            result = engine.run(ReleaseRequest(tag="v1", strategy="paced"),
                                lambda _r: GateAnswer(GateDecision.APPROVE))
        finally:
            engine.close()
        wall = time.time() - began
    starts = sorted(e.ts for e in events if e.kind is Kind.CLUSTER_STARTED)
    paced = {e.cluster for e in events if e.kind is Kind.CLUSTER_PACED}
    first = starts[0]
    busiest = max(sum(1 for t in starts[i:] if t < s + window) for i, s in enumerate(starts))
    print(f"{len(ids)} clusters, pace {count}/{window:g}s, outcome {result.outcome.value} "
          f"(exit {result.exit_code}), wall {wall:.1f}s")
    print(f"cluster_started: {len(starts)}; cluster_paced: {len(paced)}; most starts in "
          f"any {window:g}s window: {busiest} (limit {count})")
    print(f"last start {starts[-1] - first:.1f}s after the first (floor "
          f"{(math.ceil(len(ids) / count) - 1) * window:g}s)")
    print(f"{'window':>12}  starts")
    buckets = int((starts[-1] - first) // window) + 1
    for b in range(buckets):
        n = sum(1 for t in starts if b * window <= t - first < (b + 1) * window)
        span = f"{b * window:g}-{(b + 1) * window:g}s"
        print(f"{span:>12}  {n:3d} {'#' * n}")
    return 0 if busiest <= count and result.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
