"""The figures of docs/reliability.md, measured on the local fleet with the real engine,
the Git ledger (a bare remote that refuses pushes for a while) and the simulator's faults.

    .venv/bin/python bench/faults_figures.py [--clusters 5] [--error-rate 0.1]
                                             [--grace 30] [--short-grace 1]

Prints three figures:

1. Requests under API errors: a parallel release to N clusters with `error_rate` of the
   requests answered 500 or 429 (Retry-After: 1), against the same release without
   faults: requests sent, injected errors, extra requests per error (bounded retries
   cost about one request per error; a retry storm costs many).
2. Time to detect a dead cluster: a cluster's port closes while it rolls out; seconds
   from the kill to its CLUSTER_FAILED event, with the engine's default unreachable grace
   (`--grace`) and a short one (`--short-grace`, showing the detection overhead).
3. Records lost: every release above plus one whose console is SIGKILLed mid-rollout
   (closed by the reconcile of the next start) and two made while the history remote
   refuses pushes. Lost = cluster outcomes the engine reported (or,
   for the killed console, clusters it started) missing from the local ledger, plus
   records of the local ledger missing from the remote once it accepts pushes again.
   Also counted: recorded versions that disagree with what the cluster really runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from console.cli.deploy_cmd import recorded  # noqa: E402
from console.config import load  # noqa: E402
from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest  # noqa: E402
from console.events import Kind  # noqa: E402
from console.history import Ledger  # noqa: E402
from console.sim import SimFleet  # noqa: E402

APP = "user-service"


def approve(_request: Any) -> GateAnswer:
    """Approve every gate."""
    return GateAnswer(GateDecision.APPROVE, by="bench")


def fleet_file(directory: Path, ids: list[str], remote: Path) -> Path:
    """A clusters.yaml for the demo app on `ids`, its ledger pushing to `remote`."""
    doc = {"app": {"name": APP, "image": "registry.example.com/apps/user-service",
                   "manifests": str(REPO / "deploy" / "user-service"), "namespace": "{cluster}",
                   "rollout_timeout": "60s",
                   "history": {"path": str(directory / "history"), "remote": str(remote)}},
           "defaults": {"values": {"replicas": 2, "resources": {
               "requests": {"cpu": "10m", "memory": "16Mi"}}}},
           "clusters": [{"id": cid, "groups": ["fleet"],
                         "credentials": {"kubeconfig": f"{cid}.yaml"}} for cid in ids]}
    path = directory / "fleet-in.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Bench:
    """A started fleet, its fleet file and ledger remote, and what each release reported."""

    def __init__(self, directory: Path, ids: list[str]) -> None:
        self.dir = directory
        self.ids = ids
        self.remote = directory / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", str(self.remote)], check=True, timeout=30)
        subprocess.run(["git", "-C", str(self.remote), "symbolic-ref", "HEAD", "refs/heads/main"],
                       check=True, timeout=30)
        self.fleet = SimFleet(ids, readiness_delay=0.5, jitter=0.2).start()
        self.path = self.fleet.write_kubeconfigs(directory / "fleet",
                                                 config_path=fleet_file(directory, ids, self.remote))
        self.config = load(self.path)
        self.reported: dict[str, dict[str, str]] = {}   # release -> cluster -> outcome

    def release(self, tag: str, listener: Any = None, **options: Any) -> Any:
        """A parallel release recorded as `deploy` records it; remembers its outcomes."""
        options.setdefault("grace", 1.0)
        engine = Engine(self.config, **options)
        if listener is not None:
            engine.add_listener(listener)
        try:
            with recorded(self.config, engine):
                result = engine.run(ReleaseRequest(tag=tag, strategy="parallel",
                                                   max_parallel=len(self.ids)), approve)
        finally:
            engine.close()
        if result.outcome != "preflight_failed":
            self.reported[result.release_id] = {c.cluster: c.outcome for c in result.clusters}
        return result

    def requests(self) -> tuple[int, int]:
        """(requests, injected errors) served by the whole fleet so far."""
        counters = [self.fleet.counters(c) for c in self.ids]
        return sum(c["total"] for c in counters), sum(c["injected_errors"] for c in counters)

    def version(self, cid: str) -> str | None:
        """The tag the cluster's Deployment runs."""
        dep = self.fleet.get(cid, "apps/deployments", cid, APP)
        return dep["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1] \
            if dep else None

    def reject_pushes(self, reject: bool) -> None:
        """Make the remote refuse every push (a pre-receive hook), or accept again."""
        hook = self.remote / "hooks" / "pre-receive"
        if reject:
            hook.write_text("#!/bin/sh\necho 'history is frozen' >&2\nexit 1\n")
            hook.chmod(0o755)
        elif hook.exists():
            hook.unlink()


def errors_figure(bench: Bench, rate: float) -> dict[str, Any]:
    """Figure 1: requests of a release without and with `rate` API errors."""
    bench.release("v1")
    t0, _ = bench.requests()
    clean = bench.release("v2")
    t1, e1 = bench.requests()
    for cid in bench.ids:
        bench.fleet.set_faults(cid, error_rate=rate, error_codes=[500, 429], retry_after=1)
    flaky = bench.release("v3")
    t2, e2 = bench.requests()
    for cid in bench.ids:
        bench.fleet.set_faults(cid, error_rate=0.0)
    clean_sent, sent, errors = t1 - t0, t2 - t1, e2 - e1
    return {"clean_outcome": clean.outcome, "outcome": flaky.outcome,
            "requests_clean": clean_sent, "requests_with_errors": sent, "injected_errors": errors,
            "extra_per_error": round((sent - clean_sent) / errors, 2) if errors else None}


def detect_figure(bench: Bench, tag: str, grace: float) -> dict[str, Any]:
    """Figure 2: seconds from a cluster's death mid-rollout to its CLUSTER_FAILED."""
    victim = bench.ids[-1]
    marks: dict[str, float] = {}
    lock = threading.Lock()

    def listener(event: Any) -> None:
        with lock:
            if event.kind is Kind.CLUSTER_PROGRESS and event.cluster == victim \
                    and "killed" not in marks:
                marks["killed"] = time.monotonic()
                bench.fleet.kill(victim)
            elif event.kind is Kind.CLUSTER_FAILED and event.cluster == victim:
                marks.setdefault("failed", time.monotonic())

    result = bench.release(tag, listener, unreachable_grace=grace, request_timeout=3.0)
    bench.fleet.revive(victim)
    others = {c.cluster: c.outcome for c in result.clusters if c.cluster != victim}
    return {"grace": grace, "detected_after": round(marks["failed"] - marks["killed"], 2)
            if "failed" in marks and "killed" in marks else None,
            "others": sorted(set(others.values()))}


def killed_console(bench: Bench, tag: str) -> str:
    """Run `deploy` as a process, SIGKILL it once every cluster started; its release id."""
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(bench.path)}
    proc = subprocess.Popen([sys.executable, "-m", "console", "deploy", "--tag", tag,
                             "--strategy", "parallel", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env,
                            stdin=subprocess.DEVNULL, cwd=bench.dir)
    release, started = "", set()
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        release = event.get("release") or release
        if event["kind"] == "cluster_started":
            started.add(event["cluster"])
        if started == set(bench.ids):
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    bench.reported[release] = {cid: "started" for cid in started}
    return release


def records_figure(bench: Bench) -> dict[str, Any]:
    """Figure 3: outcomes missing from the ledger (local, then remote) and wrong versions."""
    bench.release("v6")
    bench.reject_pushes(True)
    bench.release("v7")
    bench.release("v8")
    bench.reject_pushes(False)
    bench.release("v9")          # pushes what the refused pushes left behind
    killed = killed_console(bench, "v10")
    live_after_kill = {cid: bench.version(cid) for cid in bench.ids}
    # The next start closes the killed release with what the clusters run (the dead
    # console's leases are free at once: its pid is gone from this host), then releases.
    bench.release("v11")
    ledger = Ledger.for_config(bench.config)
    try:
        ledger.sync()            # the reconcile's push, done before counting the remote
        local = {r.id: r for r in ledger.releases()}
    finally:
        ledger.close()
    lost_local = sum(1 for rid, clusters in bench.reported.items() for cid in clusters
                     if rid not in local or local[rid].outcome_of(cid) is None)
    shown = subprocess.run(["git", "-C", str(bench.remote), "show", f"main:history/{APP}.jsonl"],
                           capture_output=True, text=True, timeout=30).stdout
    on_remote = [json.loads(line) for line in shown.splitlines() if line.strip()]
    remote_pairs = {(r.get("release"), r.get("cluster")) for r in on_remote
                    if r.get("type") == "cluster"}
    lost_remote = sum(1 for rid, rel in local.items() for c in rel.clusters
                      if (rid, c.cluster) not in remote_pairs)
    # The killed release's reconciled record of each cluster is what the cluster ran.
    wrong = [c.cluster for c in local[killed].clusters
             if c.version != live_after_kill[c.cluster]] if killed in local else list(bench.ids)
    return {"releases": len(bench.reported), "cluster_outcomes": sum(map(len, bench.reported.values())),
            "lost_local": lost_local, "lost_remote": lost_remote,
            "killed_release_closed": bool(killed in local and local[killed].finished),
            "killed_started": len(bench.reported.get(killed, {})),
            "versions_disagreeing_with_live": wrong}


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures."""
    from console.engine import UNREACHABLE_GRACE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--grace", type=float, default=UNREACHABLE_GRACE,
                        help="unreachable grace of the first detection run (engine default)")
    parser.add_argument("--short-grace", type=float, default=1.0)
    args = parser.parse_args(argv)
    ids = [f"c{i}" for i in range(args.clusters)]

    def fresh(name: str) -> Bench:
        # A fresh fleet per figure: a dead cluster's lease (or a killed console's) holds
        # its clusters for the lease duration, which would refuse the next figure's release.
        directory = Path(tmp) / name
        directory.mkdir()
        return Bench(directory, ids)

    with tempfile.TemporaryDirectory(prefix="faults-figures-") as tmp:
        bench = fresh("errors")
        try:
            errors = errors_figure(bench, args.error_rate)
        finally:
            bench.fleet.stop()
        print(f"1. {args.error_rate:.0%} API errors (500/429 Retry-After), parallel release "
              f"to {args.clusters} clusters: {errors['outcome']}; requests sent "
              f"{errors['requests_with_errors']} (without faults {errors['requests_clean']}), "
              f"injected errors {errors['injected_errors']}, extra requests per error "
              f"{errors['extra_per_error']}", flush=True)
        for grace in (args.grace, args.short_grace):
            bench = fresh(f"dead-{grace:g}")
            try:
                bench.release("v1")
                detect = detect_figure(bench, "v2", grace)
            finally:
                bench.fleet.stop()
            print(f"2. dead cluster mid-rollout (unreachable grace {grace:g} s): failed "
                  f"{detect['detected_after']} s after its port closed; the others: "
                  f"{', '.join(detect['others'])}", flush=True)
        bench = fresh("records")
        try:
            records = records_figure(bench)
        finally:
            bench.fleet.stop()
        print(f"3. records lost: {records['lost_local'] + records['lost_remote']} "
              f"(local {records['lost_local']}, remote {records['lost_remote']}) of "
              f"{records['cluster_outcomes']} cluster outcomes in {records['releases']} "
              f"releases (two while the remote refused pushes; one whose console was "
              f"SIGKILLed after starting {records['killed_started']} clusters, closed by "
              f"the next start's reconcile: {records['killed_release_closed']}); recorded versions "
              f"disagreeing with the live clusters: "
              f"{len(records['versions_disagreeing_with_live'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
