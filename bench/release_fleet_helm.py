"""Benchmark: the Helm driver against the manifest driver, one parallel release each, same fleet.

    .venv/bin/python bench/release_fleet_helm.py [--clusters 50] [--readiness 5] [--jitter 1]
                                                 [--replicas 3] [--helm-processes 16]

The fleet (console.sim) runs in this process. The app is deployed twice on every cluster,
in two namespaces: `<id>` by manifests (deploy/user-service) and `<id>-helm` by the chart
(deploy/charts/user-service). Each gets v1 first (short readiness), then the readiness
delay is raised to `--readiness` s (+ up to `--jitter` s per pod) and each driver releases
v2 with `release-console deploy --strategy parallel --max-parallel N --json`, measured as
a child process:

- wall: the deploy phase (RELEASE_STARTED to RELEASE_FINISHED) and the whole run;
- CPU: user+sys of the console and every helm process it waited for (`os.wait4`);
- memory: the peak of the summed RSS of the console and all its helm processes alive at
  once, and the largest single helm process (sampled from /proc every 50 ms);
- helm processes started (one `helm upgrade` per cluster, plus the pre-flight's
  `helm lint`, `helm template` and `helm upgrade --dry-run=server`).

`--helm-processes` sets RELEASE_CONSOLE_HELM_PROCESSES, the console's cap on helm
processes alive at once.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from console.binaries import find  # noqa: E402
from console.sim import SimFleet  # noqa: E402
from release_fleet import fleet_parser, proc_memory, run_to_end  # noqa: E402 - bench/, the script's own folder

APP = "user-service"


def fleet_file(directory: Path, ids: list[str], replicas: int, chart: bool) -> Path:
    app: dict[str, Any] = {"name": APP, "image": "registry.example.com/apps/user-service",
                           "rollout_timeout": "10m",
                           "history": {"path": str(directory / ("history-helm" if chart
                                                                else "history"))}}
    if chart:
        app.update(chart=str(REPO / "deploy" / "charts" / "user-service"),
                   namespace="{cluster}-helm")
    else:
        app.update(manifests=str(REPO / "deploy" / "user-service"), namespace="{cluster}")
    doc = {"app": app,
           "defaults": {"values": {"replicas": replicas, "resources": {
               "requests": {"cpu": "10m", "memory": "16Mi"},
               "limits": {"cpu": "200m", "memory": "64Mi"}}}},
           "clusters": [{"id": cid, "groups": ["bench"],
                         "credentials": {"kubeconfig": f"{cid}.yaml"}} for cid in ids]}
    path = directory / ("fleet-helm-in.yaml" if chart else "fleet-in.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class TreeSampler(threading.Thread):
    """Samples the RSS of a process and all its descendants from /proc."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak_sum_kb = 0
        self.peak_helm_kb = 0
        self.helm_pids: set[int] = set()
        self.peak_helm_alive = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, ()))
        return out

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            total, helm_alive = 0, 0
            for pid in self._tree():
                memory = proc_memory(pid)
                if memory is None:
                    continue
                name, rss, hwm = memory
                total += rss
                if name == "helm":
                    helm_alive += 1
                    self.helm_pids.add(pid)
                    self.peak_helm_kb = max(self.peak_helm_kb, hwm)
            self.peak_sum_kb = max(self.peak_sum_kb, total)
            self.peak_helm_alive = max(self.peak_helm_alive, helm_alive)


def console(argv: list[str], config: Path, out: Path, env_extra: dict[str, str]) -> dict[str, Any]:
    """Run `release-console ARGV` to its end; wall, CPU (with waited-for children), memory."""
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(config), "PYTHONUNBUFFERED": "1",
           **env_extra}
    samplers: list[TreeSampler] = []

    def watch(pid: int) -> Callable[[], None]:
        samplers.append(TreeSampler(pid))
        samplers[0].start()
        return samplers[0].stop
    measured = run_to_end([sys.executable, "-m", "console", *argv], out, env, watch)
    sampler = samplers[0]
    return {**measured, "peak_mb": sampler.peak_sum_kb / 1024,
            "helm_mb": sampler.peak_helm_kb / 1024, "helm_seen": len(sampler.helm_pids),
            "helm_alive": sampler.peak_helm_alive}


def deploy_phase(events_file: Path) -> tuple[float, str]:
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    started = next(e["ts"] for e in events if e["kind"] == "release_started")
    finished = next(e for e in events if e["kind"] == "release_finished")
    return finished["ts"] - started, finished["outcome"]


def main() -> int:
    parser = fleet_parser(__doc__.splitlines()[0], clusters=50, readiness=5.0, jitter=1.0)
    parser.add_argument("--helm-processes", type=int, default=16)
    args = parser.parse_args()
    helm = find("helm")
    if helm is None:
        print("helm not found: run `make bin` (or put helm on PATH)", file=sys.stderr)
        return 2
    ids = [f"c{i}" for i in range(args.clusters)]
    work = Path(tempfile.mkdtemp(prefix="release-fleet-helm-"))
    extra = {"RELEASE_CONSOLE_HELM_PROCESSES": str(args.helm_processes),
             "RELEASE_CONSOLE_BIN": str(helm.parent)}
    deploy = ["deploy", "--strategy", "parallel", "--max-parallel", str(len(ids)), "--json",
              "--yes"]
    results: dict[str, dict[str, Any]] = {}
    with SimFleet(ids, readiness_delay=0.3, jitter=0.2) as fleet:
        configs = {}
        for name, chart in (("manifests", False), ("helm", True)):
            source = fleet_file(work, ids, args.replicas, chart)
            configs[name] = fleet.write_kubeconfigs(work / f"fleet-{name}", config_path=source)
            setup = console([*deploy, "--tag", "v1"], configs[name], work / f"{name}-v1.jsonl",
                            extra)
            if setup["code"] != 0:
                print(f"{name}: set-up failed (exit {setup['code']}): {setup['stderr'][-1500:]}")
                return 1
            print(f"{name}: v1 on {len(ids)} clusters in {setup['wall']:.1f}s", flush=True)
        for cid in ids:
            fleet.set_faults(cid, readiness_delay=args.readiness, jitter=args.jitter)
        for name in ("manifests", "helm"):
            out = work / f"{name}-v2.jsonl"
            run = console([*deploy, "--tag", "v2"], configs[name], out, extra)
            run["phase"], run["outcome"] = deploy_phase(out)
            results[name] = run
            print(f"{name}: exit {run['code']}, {run['outcome']}", flush=True)
    m, h = results["manifests"], results["helm"]

    def ratio(a: float, b: float) -> str:
        return f"x{b / a:.1f}" if a else "-"

    print()
    print(f"{len(ids)} clusters, {args.replicas} replicas, pods ready after {args.readiness:g}s "
          f"+ up to {args.jitter:g}s; parallel, all at once; helm cap {args.helm_processes}")
    print(f"{'':40}{'manifests':>12}{'helm':>12}{'helm/manifests':>16}")
    for label, key, fmt in (("release wall time, deploy phase (s)", "phase", "{:.1f}"),
                            ("whole run incl. pre-flight (s)", "wall", "{:.1f}"),
                            ("CPU s (console + helm processes)", "cpu", "{:.1f}"),
                            ("peak memory, all processes (MB)", "peak_mb", "{:.0f}")):
        print(f"{label:40}{fmt.format(m[key]):>12}{fmt.format(h[key]):>12}"
              f"{ratio(m[key], h[key]):>16}")
    print(f"{'helm processes seen (sampled)':40}{'-':>12}{h['helm_seen']:>12}")
    print(f"{'helm processes alive at once (peak)':40}{'-':>12}{h['helm_alive']:>12}")
    print(f"{'largest helm process (MB)':40}{'-':>12}{h['helm_mb']:>12.0f}")
    return 0 if m["code"] == 0 and h["code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
