"""Benchmark the local fleet: N simulated clusters in one process, one Deployment rolled on all.

    python bench/sim_scale.py [--clusters 200] [--replicas 3] [--readiness-delay 2] [--surge 100%]

The fleet runs alone in a child process (so its CPU and memory are its own); this process
drives it through the real `kubernetes` client, one ApiClient and one thread per cluster:
it creates a namespace and a Deployment everywhere, then rolls a new image on every cluster
at once and watches each rollout to completion. Printed: start-up time; the time the
simulator took for the rollouts (first sync of the new spec to complete, as its controller
saw it) and the time the clients observed, both against the ideal the readiness delay
implies; the simulator's CPU seconds and peak memory. Goals: start under 5 s; the simulator
adds under 10% to the configured rollout time.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TIMEOUT = 30


def serve(conn: Any, clusters: int, delay: float) -> None:
    """Child process: run the fleet and answer the parent's requests over `conn`."""
    from console.sim import SimFleet
    started = time.monotonic()
    fleet = SimFleet([f"c{n}" for n in range(clusters)], readiness_delay=delay, jitter=0).start()
    startup = time.monotonic() - started
    conn.send({"startup": startup, "kubeconfigs": [fleet.kubeconfig(cid) for cid in fleet.ids]})
    while True:
        msg = conn.recv()
        if msg == "mark":
            fleet.reset_max_concurrent_rollouts()
            conn.send({"cpu": time.process_time(), "done": len(fleet.rollout_durations())})
        elif msg == "report":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send({"cpu": time.process_time(), "maxrss_mib": usage.ru_maxrss / 1024,
                       "durations": [d for _, _, d in fleet.rollout_durations()],
                       "max_concurrent": fleet.max_concurrent_rollouts,
                       "requests": sum(fleet.counters(cid)["total"] for cid in fleet.ids)})
        else:
            fleet.stop()
            conn.send("stopped")
            return


def manifest(image: str, replicas: int, surge: str) -> dict[str, Any]:
    """The benchmark Deployment."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "bench", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


def roll(api: Any, body: dict[str, Any]) -> float:
    """Apply `body` and watch until the rollout is complete; returns the seconds it took."""
    from kubernetes import client, watch
    apps = client.AppsV1Api(api)
    started = time.monotonic()
    applied = apps.patch_namespaced_deployment("web", "bench", body, field_manager="bench", force=True,
                                               _content_type="application/apply-patch+yaml",
                                               _request_timeout=TIMEOUT)
    generation = applied.metadata.generation
    w = watch.Watch()
    for event in w.stream(apps.list_namespaced_deployment, "bench", field_selector="metadata.name=web",
                          timeout_seconds=120, _request_timeout=150):
        d = event["object"]
        s = d.status
        want = d.spec.replicas
        if ((s.observed_generation or 0) >= generation and (s.updated_replicas or 0) == want
                and (s.replicas or 0) == want and (s.available_replicas or 0) == want):
            w.stop()
            return time.monotonic() - started
    raise RuntimeError("the watch ended before the rollout completed")


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--readiness-delay", type=float, default=2.0)
    parser.add_argument("--surge", default="100%", help="maxSurge (maxUnavailable is 0)")
    args = parser.parse_args()
    from kubernetes import client, config

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, args.clusters, args.readiness_delay), daemon=True)
    proc.start()
    try:
        hello = parent.recv()
        print(f"start-up: {args.clusters} clusters listening in {hello['startup']:.2f} s")
        apis = []
        for kubeconfig in hello["kubeconfigs"]:
            api = config.new_client_from_config_dict(kubeconfig, persist_config=False)
            api.configuration.retries = False
            apis.append(api)
        with ThreadPoolExecutor(max_workers=min(args.clusters, 64)) as pool:
            list(pool.map(lambda api: client.CoreV1Api(api).create_namespace(
                {"metadata": {"name": "bench"}}, _request_timeout=TIMEOUT), apis))
            list(pool.map(lambda api: roll(api, manifest("bench/web:v1", args.replicas, args.surge)), apis))
        print(f"set-up: a namespace and a {args.replicas}-replica Deployment ready on every cluster")

        if args.surge.endswith("%"):
            surge = math.ceil(float(args.surge[:-1]) / 100 * args.replicas)
        else:
            surge = int(args.surge)
        waves = math.ceil(args.replicas / max(surge, 1))
        ideal = waves * args.readiness_delay
        parent.send("mark")
        mark = parent.recv()
        body = manifest("bench/web:v2", args.replicas, args.surge)
        barrier = threading.Barrier(args.clusters)
        observed: list[float] = []

        def one(api: Any) -> None:
            barrier.wait()
            observed.append(roll(api, body))
        started = time.monotonic()
        threads = [threading.Thread(target=one, args=(api,)) for api in apis]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        parent.send("report")
        report = parent.recv()
        server = sorted(report["durations"][mark["done"]:])
        observed.sort()
        cpu = report["cpu"] - mark["cpu"]
        print(f"rollout: {len(server)} rollouts at once ({args.replicas} replicas, maxSurge {args.surge}: "
              f"{waves} wave(s) x {args.readiness_delay:g} s readiness = ideal {ideal:.2f} s), "
              f"max concurrent {report['max_concurrent']}")
        print(f"  simulator: slowest {server[-1]:.2f} s, median {server[len(server) // 2]:.2f} s "
              f"-> adds {100 * (server[-1] - ideal) / ideal:.1f}% to the ideal")
        print(f"  clients:   all {len(observed)} watched to completion in {elapsed:.2f} s "
              f"(median {observed[len(observed) // 2]:.2f} s; includes {args.clusters} client threads' "
              f"TLS, JSON and model overhead in this process)")
        print(f"simulator CPU: {cpu:.2f} s during the rollouts ({100 * cpu / elapsed:.0f}% of one core, "
              f"{1000 * cpu / len(server):.1f} ms per rollout = {100 * cpu / len(server) / ideal:.2f}% of its "
              f"ideal time); requests served in total {report['requests']}")
        print(f"simulator memory: peak RSS {report['maxrss_mib']:.0f} MiB")
    finally:
        parent.send("stop")
        if parent.poll(15):
            parent.recv()
        proc.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
