"""Benchmark the lab: time to ready and resident memory for 1, 3 and 5 real clusters.

    python bench/lab_start.py [--sizes 1,3,5] [--demo] [--etcd-per-cluster]

For each size a LabFleet starts (shared etcd unless --etcd-per-cluster), is timed from
start() to ready (every kube-apiserver ready, every node Ready and untainted, the default
ServiceAccount made by the controller-manager), then one Deployment of 3 replicas is
released to every cluster through the console's CLI and the memory (VmRSS of every process
the lab started, summed) is read again. `--demo` also starts the demo fleet (clusters.yaml,
five clusters). Goal: the demo fleet ready in < 60 s and < 3 GB on a 2-core machine.
Needs `make bin`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


def measure(label: str, make) -> None:  # type: ignore[no-untyped-def]
    from console.cli import main

    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        lab = make(Path(tmp))
        lab.start(timeout=300)
        try:
            ready_mib = lab.memory_bytes() / 2**20
            config = lab.write_kubeconfigs(Path(tmp))
            began = time.monotonic()
            code = main(["--config", str(config), "deploy", "--tag", "v1", "--strategy",
                         "parallel", "--yes", "--json"])
            released = time.monotonic() - began
            after_mib = lab.memory_bytes() / 2**20
        finally:
            lab.stop()
    print(f"{label:<34} ready in {lab.started_in:5.1f} s  {ready_mib:6.0f} MiB at ready  "
          f"{after_mib:6.0f} MiB after a release (exit {code}, {released:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,5")
    parser.add_argument("--demo", action="store_true", help="also the demo fleet (clusters.yaml)")
    parser.add_argument("--etcd-per-cluster", action="store_true")
    args = parser.parse_args()

    from console.cli.lab_cmd import count_source
    from console.lab import LabFleet

    layout = "one etcd each" if args.etcd_per_cluster else "shared etcd"
    import contextlib
    import io
    for n in (int(s) for s in args.sizes.split(",")):
        def make(tmp: Path, n: int = n) -> LabFleet:
            lab = LabFleet.from_config(count_source(REPO / "clusters.yaml", n, tmp), tmp)
            lab.etcd_per_cluster = args.etcd_per_cluster
            return lab
        with contextlib.redirect_stdout(io.StringIO()) as out:
            measure(f"{n} cluster(s), {layout}", make)
        print(out.getvalue().splitlines()[-1], flush=True)
    if args.demo:
        def demo(tmp: Path) -> LabFleet:
            lab = LabFleet.from_config(REPO / "clusters.yaml", tmp)
            lab.etcd_per_cluster = args.etcd_per_cluster
            return lab
        with contextlib.redirect_stdout(io.StringIO()) as out:
            measure(f"demo fleet (5 clusters), {layout}", demo)
        print(out.getvalue().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
