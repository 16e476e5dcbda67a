"""Benchmark: one parallel release to a large simulated fleet, the console against the original way.

    .venv/bin/python bench/release_fleet.py [--clusters 200] [--readiness 20] [--jitter 2]
                                            [--replicas 3] [--no-kubectl]
                                            [--busy same-cpu|any] [--all-cpus]

The fleet (console.sim) runs in this process; everything measured runs as child
processes, so their CPU time and peak memory are theirs alone (`os.wait4`):

1. Set-up: every cluster gets v1 (short readiness delay), then the readiness delay is
   set to `--readiness` s plus up to `--jitter` s per pod.
2. The console: `release-console check` (the pre-flight alone, to count its requests
   apart), then `release-console deploy --strategy parallel --max-parallel N --json` to v2.
3. The original design's way: per cluster, `kubectl set image` then `kubectl rollout
   status`, all clusters at once (one thread each driving the two processes), to v3.

Printed side by side: release wall time (the console's deploy phase: RELEASE_STARTED to
RELEASE_FINISHED; kubectl: first process start to last exit) against the slowest
cluster's rollout as the simulator saw it (new generation observed -> rollout complete),
the overhead in %, CPU seconds, peak memory, and API requests per cluster.

`--busy` starts a busy neighbour (`while True: pass`) beside each measured console
process (`check`, then `deploy`), ended with it: `same-cpu` keeps it to the CPU the
console keeps to (the worst case for a process kept to one CPU; read from the console's
`Cpus_allowed_list` as soon as it pins itself, else the CPU it runs on once its engine
threads run), `any` lets it run anywhere. `--all-cpus` passes `--all-cpus` to the console.
The console's CPU moves (`console.engine.one_cpu.CpuWatch`) are printed after the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from console.sim import SimFleet  # noqa: E402

APP = "user-service"


class TimedFleet(SimFleet):
    """A SimFleet that also records when each Deployment's rollout starts and ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spans: dict[tuple[str, str], list[float]] = {}
        self._state: dict[tuple[str, str], bool] = {}

    def _on_rollout(self, cluster_id: str, key: str, active: bool) -> None:
        now = time.monotonic()
        k = (cluster_id, key)
        was = self._state.get(k, False)
        if active and not was:
            self.spans[k] = [now, now]
        elif was and not active and k in self.spans:
            self.spans[k][1] = now
        self._state[k] = active
        super()._on_rollout(cluster_id, key, active)

    def reset_spans(self) -> None:
        """Forget earlier rollouts (called on the fleet's loop, where spans are written)."""
        self.call(lambda: (self.spans.clear(), self._state.clear()))

    def rollout_times(self) -> list[float]:
        """Duration of every rollout recorded since the last reset."""
        return self.call(lambda: [end - start for start, end in self.spans.values()])


def fleet_file(directory: Path, ids: list[str], replicas: int) -> Path:
    doc = {
        "app": {"name": APP, "image": "registry.example.com/apps/user-service",
                "manifests": str(REPO / "deploy" / "user-service"), "namespace": "{cluster}",
                "rollout_timeout": "10m", "history": {"path": str(directory / "history")}},
        "defaults": {"values": {"replicas": replicas,
                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}},
        "clusters": [{"id": cid, "groups": ["bench"],
                      "credentials": {"kubeconfig": f"{cid}.yaml"}} for cid in ids],
    }
    path = directory / "fleet-in.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def totals(fleet: SimFleet) -> dict[str, int]:
    return {cid: int(fleet.counters(cid)["total"]) for cid in fleet.ids}


def proc_memory(pid: int) -> tuple[str, int, int] | None:
    """(name, VmRSS, VmHWM in kB) of a process, from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return (fields.get("Name", "").strip(), int(fields.get("VmRSS", "0 kB").split()[0]),
            int(fields.get("VmHWM", "0 kB").split()[0]))


class RssSampler(threading.Thread):
    """Samples the resident memory of live child processes from /proc.

    `ru_maxrss` of a child forked from this (large) process counts this process's pages
    from before `exec`, so memory is read from /proc instead: the peak `VmHWM` of each
    process and the peak of the summed `VmRSS` of all processes alive at once.
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.pids: set[int] = set()
        self.lock = threading.Lock()
        self.hwm_kb: dict[int, int] = {}
        self.peak_sum_kb = 0
        self._halt = threading.Event()

    def add(self, pid: int) -> None:
        with self.lock:
            self.pids.add(pid)

    def remove(self, pid: int) -> None:
        with self.lock:
            self.pids.discard(pid)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            with self.lock:
                pids = list(self.pids)
            total = 0
            for pid in pids:
                memory = proc_memory(pid)
                if memory is None:
                    continue
                _name, rss, hwm = memory
                total += rss
                self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), hwm)
            self.peak_sum_kb = max(self.peak_sum_kb, total)


def run_to_end(argv: list[str], stdout: Path, env: dict[str, str],
               watch: Callable[[int], Callable[[], None]]) -> dict[str, Any]:
    """Run a child (stdout to the file `stdout`, in its directory) to its end; `watch(pid)`
    starts a sampler once it runs and returns how to stop it. Wall time, CPU (user+sys,
    with the children it waited for, from its rusage), exit code and stderr."""
    with stdout.open("w") as out:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, cwd=stdout.parent)
        stop = watch(proc.pid)
        # stderr is small (warnings); read it while waiting so the child never blocks on it.
        err_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))
        reader.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        reader.join()
    stop()
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "code": os.waitstatus_to_exitcode(status),
            "stderr": b"".join(err_chunks).decode(errors="replace")}


def run_measured(argv: list[str], stdout: Path, env: dict[str, str],
                 busy: str | None = None) -> dict[str, Any]:
    """Run a child to its end; wall, CPU and peak RSS (/proc); with `busy`, a busy
    neighbour beside it (`Neighbour`)."""
    sampler = RssSampler()
    sampler.start()
    neighbour: Neighbour | None = None

    def watch(pid: int) -> Callable[[], None]:
        nonlocal neighbour
        sampler.add(pid)
        if busy:
            neighbour = Neighbour(pid, same_cpu=busy == "same-cpu")

        def stop() -> None:
            sampler.stop()
            if neighbour is not None:
                neighbour.stop()
        return stop
    measured = run_to_end(argv, stdout, env, watch)
    return {**measured, "rss_mb": max(sampler.hwm_kb.values(), default=0) / 1024,
            "busy": neighbour.describe() if neighbour is not None else None}


def allowed_cpus(pid: int) -> str | None:
    """The main thread of `pid`'s `Cpus_allowed_list`, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("Cpus_allowed_list:")), None)


def running_on(pid: int) -> int | None:
    """The CPU `pid` last ran on (`/proc/PID/stat`'s 39th field)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


class Neighbour:
    """A busy process (`while True: pass`) beside the console process `pid`: kept to the
    console's CPU (`same_cpu`: the one it pins itself to, looked for every 10 ms; if it
    has not pinned itself once it runs 5 threads, the one it runs on then), or free."""

    def __init__(self, pid: int, same_cpu: bool) -> None:
        self.cpu: int | None = None
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                     stdin=subprocess.DEVNULL)
        if same_cpu:
            # Until the console is seen, the neighbour waits (stopped), not busy elsewhere.
            os.kill(self.proc.pid, 19)   # SIGSTOP
            threading.Thread(target=self._follow, args=(pid,), daemon=True).start()

    def _follow(self, pid: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cpus = allowed_cpus(pid)
            if cpus is None:
                break
            if cpus.isdigit():
                self.cpu = int(cpus)
                break
            try:
                threads = len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                break
            if threads >= 5:
                self.cpu = running_on(pid)
                break
            time.sleep(0.01)
        if self.cpu is not None:
            os.sched_setaffinity(self.proc.pid, {self.cpu})
        os.kill(self.proc.pid, 18)   # SIGCONT

    def stop(self) -> None:
        self.proc.kill()
        _pid, _status, usage = os.wait4(self.proc.pid, 0)
        self.cpu_seconds = usage.ru_utime + usage.ru_stime

    def describe(self) -> str:
        where = f"kept to CPU {self.cpu}" if self.cpu is not None else "free"
        return f"busy neighbour {where}, {self.cpu_seconds:.1f} CPU s"


def console(argv: list[str], config: Path, out: Path, busy: str | None = None,
            extra: tuple[str, ...] = ()) -> dict[str, Any]:
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(config), "PYTHONUNBUFFERED": "1",
           "RELEASE_CONSOLE_CPU_TRACE": "1"}
    return run_measured([sys.executable, "-m", "console", *argv, *extra], out, env, busy)


def cpu_moves(stderr: str) -> str:
    """The console's `one cpu:` line (console.engine.one_cpu's watcher), or what it did
    without one."""
    return next((line for line in stderr.splitlines() if line.startswith("one cpu:")),
                "no watcher line (spread, or a console without one)")


def kubectl_way(fleet: TimedFleet, kubeconfigs: Path, tag: str, kubectl: str,
                work: Path) -> dict[str, Any]:
    """Per cluster `kubectl set image` + `kubectl rollout status`, every cluster at once."""
    cpu = 0.0
    processes = 0
    sampler = RssSampler()
    sampler.start()
    failures: list[str] = []
    lock = threading.Lock()
    ends: list[float] = []

    def one(cid: str) -> None:
        nonlocal cpu, processes
        cache = work / "kubectl-cache" / cid
        base = [kubectl, f"--kubeconfig={kubeconfigs / f'{cid}.yaml'}", f"--cache-dir={cache}",
                "-n", cid]
        dep = fleet.get(cid, "apps/deployments", cid, APP)
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        repo = image.split("@")[0].rsplit(":", 1)[0]   # a pinned image ends in @sha256:...
        for argv in (base + ["set", "image", f"deployment/{APP}", f"{APP}={repo}:{tag}"],
                     base + ["rollout", "status", f"deployment/{APP}", "--timeout=10m"]):
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
            sampler.add(proc.pid)
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            _pid, status, usage = os.wait4(proc.pid, 0)
            sampler.remove(proc.pid)
            with lock:
                cpu += usage.ru_utime + usage.ru_stime
                processes += 1
            if os.waitstatus_to_exitcode(status) != 0:
                with lock:
                    failures.append(f"{cid}: {' '.join(argv[5:7])}: {err.strip()[:200]}")
                return
        with lock:
            ends.append(time.monotonic())

    threads = [threading.Thread(target=one, args=(cid,)) for cid in fleet.ids]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    sampler.stop()
    return {"wall": wall, "cpu": cpu, "peak_sum_mb": sampler.peak_sum_kb / 1024,
            "max_one_mb": max(sampler.hwm_kb.values(), default=0) / 1024,
            "failures": failures, "processes": processes}


def per_cluster(before: dict[str, int], after: dict[str, int]) -> list[int]:
    return [after[c] - before[c] for c in before]


def describe(counts: list[int]) -> str:
    return f"{statistics.mean(counts):.1f} (min {min(counts)}, max {max(counts)})"


def fleet_parser(description: str, clusters: int, readiness: float,
                 jitter: float) -> argparse.ArgumentParser:
    """The options of a released fleet's size and pace (the defaults given), and --replicas."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--clusters", type=int, default=clusters)
    parser.add_argument("--readiness", type=float, default=readiness,
                        help="seconds until a pod is Ready")
    parser.add_argument("--jitter", type=float, default=jitter)
    parser.add_argument("--replicas", type=int, default=3)
    return parser


def main() -> int:
    parser = fleet_parser(__doc__.splitlines()[0], clusters=200, readiness=20.0, jitter=2.0)
    parser.add_argument("--no-kubectl", action="store_true", help="skip the original way")
    parser.add_argument("--busy", choices=("same-cpu", "any"), default=None,
                        help="a busy process beside each measured console process: kept "
                             "to the CPU the console keeps to, or free")
    parser.add_argument("--all-cpus", action="store_true",
                        help="run check and deploy with --all-cpus")
    args = parser.parse_args()
    ids = [f"c{i}" for i in range(args.clusters)]
    work = Path(tempfile.mkdtemp(prefix="release-fleet-"))
    kubectl = str(REPO / ".venv" / "bin" / "kubectl")
    if not Path(kubectl).exists():
        kubectl = shutil.which("kubectl") or ""
    t0 = time.monotonic()
    with TimedFleet(ids, readiness_delay=0.3, jitter=0.2) as fleet:
        print(f"fleet: {len(ids)} clusters up in {time.monotonic() - t0:.1f}s", flush=True)
        source = fleet_file(work, ids, args.replicas)
        config = fleet.write_kubeconfigs(work / "fleet", config_path=source)
        setup = console(["deploy", "--tag", "v1", "--strategy", "parallel", "--max-parallel",
                         str(len(ids)), "--json"], config, work / "setup.jsonl")
        if setup["code"] != 0:
            print(f"set-up release failed (exit {setup['code']}): {setup['stderr'][-2000:]}")
            return 1
        print(f"set-up: v1 on every cluster in {setup['wall']:.1f}s", flush=True)
        for cid in ids:
            fleet.set_faults(cid, readiness_delay=args.readiness, jitter=args.jitter)

        # --- the console -------------------------------------------------------------
        before = totals(fleet)
        extra = ("--all-cpus",) if args.all_cpus else ()
        check = console(["check", "--tag", "v2", "--strategy", "parallel", "--max-parallel",
                         str(len(ids))], config, work / "check.txt", args.busy, extra)
        after_check = totals(fleet)
        preflight_requests = per_cluster(before, after_check)
        fleet.reset_spans()
        deploy = console(["deploy", "--tag", "v2", "--strategy", "parallel", "--max-parallel",
                          str(len(ids)), "--json"], config, work / "deploy.jsonl",
                         args.busy, extra)
        after_deploy = totals(fleet)
        events = [json.loads(line) for line in (work / "deploy.jsonl").read_text().splitlines()
                  if line.strip()]
        started = next(e["ts"] for e in events if e["kind"] == "release_started")
        finished = next(e for e in events if e["kind"] == "release_finished")
        deploy_phase = finished["ts"] - started
        console_rollouts = fleet.rollout_times()
        deploy_total = per_cluster(after_check, after_deploy)
        deploy_requests = [d - p for d, p in zip(deploy_total, preflight_requests)]
        sample = fleet.counters(ids[0])
        print(f"console: exit {deploy['code']}, outcome {finished['outcome']}, "
              f"{finished.get('summary')}", flush=True)
        if deploy["code"] != 0:
            print(deploy["stderr"][-2000:])

        # --- the original way ----------------------------------------------------------
        kubectl_result: dict[str, Any] | None = None
        if not args.no_kubectl and kubectl:
            before_k = totals(fleet)
            fleet.reset_spans()
            kubectl_result = kubectl_way(fleet, work / "fleet", "v3", kubectl, work)
            kubectl_requests = per_cluster(before_k, totals(fleet))
            kubectl_rollouts = fleet.rollout_times()

    slowest = max(console_rollouts)
    print()
    print(f"{len(ids)} clusters, {args.replicas} replicas each, pods ready after "
          f"{args.readiness:g}s + up to {args.jitter:g}s jitter; parallel, all at once")
    print(f"{'':38}{'console':>16}{'kubectl (original)':>22}")

    def row(label: str, mine: str, theirs: str) -> None:
        print(f"{label:38}{mine:>16}{theirs:>22}")

    k = kubectl_result
    k_slowest = max(kubectl_rollouts) if k else 0.0
    row("release wall time (s)", f"{deploy_phase:.1f}", f"{k['wall']:.1f}" if k else "-")
    row("slowest cluster rollout (s)", f"{slowest:.1f}", f"{k_slowest:.1f}" if k else "-")
    row("added over slowest rollout", f"{(deploy_phase / slowest - 1) * 100:.1f}%",
        f"{(k['wall'] / k_slowest - 1) * 100:.1f}%" if k else "-")
    row("whole run incl. pre-flight, start-up (s)", f"{deploy['wall']:.1f}", "-")
    row("CPU seconds (whole run)", f"{deploy['cpu']:.1f}", f"{k['cpu']:.1f}" if k else "-")
    row("  of which pre-flight (`check` alone)", f"{check['cpu']:.1f}", "-")
    row("peak memory (MB)", f"{deploy['rss_mb']:.0f}",
        f"{k['peak_sum_mb']:.0f} (all at once)" if k else "-")
    row("API requests/cluster, deploy", f"{statistics.mean(deploy_requests):.1f}",
        f"{statistics.mean(kubectl_requests):.1f}" if k else "-")
    row("API requests/cluster, pre-flight", f"{statistics.mean(preflight_requests):.1f}", "-")
    print()
    print(f"console deploy-phase requests per cluster: {describe(deploy_requests)}; "
          f"pre-flight: {describe(preflight_requests)}")
    print(f"pre-flight alone (`check`): {check['wall']:.1f}s wall, {check['cpu']:.1f} CPU s, "
          f"exit {check['code']}")
    print(f"requests of {ids[0]} (all phases, by verb/resource): "
          f"{sample.get('by_verb_resource')}")
    for name, run in (("check", check), ("deploy", deploy)):
        print(f"{name}: {cpu_moves(run['stderr'])}"
              + (f"; {run['busy']}" if run["busy"] else ""))
    if k:
        print(f"kubectl: {k['processes']} processes, largest {k['max_one_mb']:.0f} MB; requests "
              f"per cluster: {describe(kubectl_requests)}; clusters failed: {len(k['failures'])}")
        for line in k["failures"][:5]:
            print(f"  {line}")
    return 0 if deploy["code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
