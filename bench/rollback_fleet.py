"""Benchmark: `rollback --release ID` of a large simulated fleet, kept to one CPU against
spread over every CPU (`--all-cpus`), alternated on one fleet.

    .venv/bin/python bench/rollback_fleet.py [--clusters 1000] [--readiness 5] [--pairs 2]

The fleet (console.sim) runs in this process, as in bench/release_fleet.py, whose
helpers this uses. Set-up: v1 everywhere. Then, `--pairs` times, for each of one CPU
and `--all-cpus` in turn: a parallel `deploy` of a new version (pods ready at once),
then the rollback of that release with pods ready after `--readiness` s (+ up to
`--jitter` s), measured as a child process: wall time, CPU seconds (user + system),
peak memory, and the clusters rolled back.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from release_fleet import TimedFleet, console, cpu_moves, fleet_file, fleet_parser  # noqa: E402


def main() -> int:
    parser = fleet_parser(__doc__.splitlines()[0], clusters=1000, readiness=5.0, jitter=1.0)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    ids = [f"c{i}" for i in range(args.clusters)]
    work = Path(tempfile.mkdtemp(prefix="rollback-fleet-"))
    every = ["--strategy", "parallel", "--max-parallel", str(len(ids))]
    rows = []
    with TimedFleet(ids, readiness_delay=0.3, jitter=0.2) as fleet:
        source = fleet_file(work, ids, args.replicas)
        config = fleet.write_kubeconfigs(work / "fleet", config_path=source)
        setup = console(["deploy", "--tag", "v1", *every, "--json"], config,
                        work / "setup.jsonl")
        if setup["code"] != 0:
            print(f"set-up failed (exit {setup['code']}): {setup['stderr'][-2000:]}")
            return 1
        print(f"fleet and v1 up ({len(ids)} clusters)", flush=True)
        version = 1
        for pair in range(args.pairs):
            for spread in (False, True):
                version += 1
                for cid in ids:
                    fleet.set_faults(cid, readiness_delay=0.3, jitter=0.2)
                out = work / f"deploy-v{version}.jsonl"
                deployed = console(["deploy", "--tag", f"v{version}", *every, "--json"],
                                   config, out)
                if deployed["code"] != 0:
                    print(f"deploy v{version} failed: {deployed['stderr'][-2000:]}")
                    return 1
                release = json.loads(out.read_text().splitlines()[0])["release"]
                for cid in ids:
                    fleet.set_faults(cid, readiness_delay=args.readiness, jitter=args.jitter)
                load0 = os.getloadavg()[0]
                start = time.strftime("%H:%M:%S", time.gmtime())
                rolled = console(["rollback", "--release", release, "--yes",
                                  *(["--all-cpus"] if spread else [])], config,
                                 work / f"rollback-v{version}.txt")
                text = (work / f"rollback-v{version}.txt").read_text()
                back = sum(": rolled_back " in line for line in text.splitlines())
                row = (f"{'all CPUs' if spread else 'one CPU':9} {start} "
                       f"{rolled['wall']:6.1f} s wall {rolled['cpu']:6.1f} CPU s "
                       f"{rolled['rss_mb']:5.0f} MB  {back} rolled back, exit "
                       f"{rolled['code']}  load {load0:.1f}-{os.getloadavg()[0]:.1f}  "
                       f"{cpu_moves(rolled['stderr'])}")
                print(row, flush=True)
                rows.append(row)
                if rolled["code"] != 0:
                    print(rolled["stderr"][-2000:])
    print()
    print(f"rollback --release of {len(ids)} clusters, pods ready after "
          f"{args.readiness:g}s + up to {args.jitter:g}s:")
    for row in rows:
        print(f"  {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
