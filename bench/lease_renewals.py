"""Benchmark: the CPU of renewing a release's leases on many clusters (the renewer's
own loop, apart from the renewal requests).

    .venv/bin/python bench/lease_renewals.py [--clusters 1000] [--duration 4] [--rounds 4]

Takes one lease per simulated cluster (`ReleaseLock`, as a release does), holds them
for `--rounds` renewal rounds (every half of `--duration` s) and prints the CPU seconds
of the renewer thread itself (its scheduling and its waits, from /proc) and of the
whole process, and the renewals the simulator saw.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from console.kube.client import KubeClient, new_api_client  # noqa: E402
from console.locks import ReleaseLock  # noqa: E402
from console.sim import SimFleet  # noqa: E402


def thread_cpu(name: str) -> float:
    """CPU seconds (user + system) of this process's thread called `name`."""
    tick = os.sysconf("SC_CLK_TCK")
    native = {t.native_id for t in threading.enumerate() if t.name == name}
    total = 0.0
    for tid in native:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    ids = [f"c{i}" for i in range(args.clusters)]
    with SimFleet(ids) as fleet:
        clients = {cid: (KubeClient(cid, new_api_client(cid, fleet.kubeconfig(cid))),
                         "default") for cid in ids}
        lock = ReleaseLock.for_clusters(clients, "user-service", "r-bench",
                                        duration=args.duration)
        lock.acquire()
        before = {cid: int(fleet.counters(cid)["total"]) for cid in ids}
        cpu0 = time.process_time()
        time.sleep(args.rounds * args.duration / 2 + 0.5)
        renewer = thread_cpu("release-lock-renewer")
        cpu = time.process_time() - cpu0
        sent = sum(int(fleet.counters(cid)["total"]) - before[cid] for cid in ids)
        problems = lock.release()
        for kube, _ns in clients.values():
            kube.close()
    print(f"{args.clusters} leases, {args.rounds} rounds of renewals every "
          f"{args.duration / 2:g}s: {sent} requests ({sent / args.clusters:.1f} per lease)")
    print(f"renewer thread CPU s: {renewer:.2f}; whole process (simulator included) CPU s "
          f"while held: {cpu:.2f}; problems at release: {len(problems)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
