"""The console under load: 1,000 simulated clusters, one parallel release, the app headless.

Prints the three figures of the TUI's goals (issue 16) while every row of the grid moves:

1. UI process CPU: the CPU seconds of the console's UI process over the release, as a
   share of one core (goal: under 25%). CPU seconds do not depend on the machine's load;
   the share divides them by the release's wall time, which does.
2. Keypress-to-frame latency: a key (down/up) is posted as the terminal driver delivers
   it every 100 ms during the release and timed until the screen has been refreshed with
   its effect - the cursor moved and the next screen update ran (goal: p95 under 50 ms).
   Also the UI thread's CPU between each key and its frame (what the console itself put
   in the key's way, whatever the load; the rest of the wait is the machine's).
3. First frame: from launching a fresh interpreter to the fleet screen's first refresh
   (goal: under 1 s), through `release-console ui --config FILE`'s argument parser (it
   imports every sub-command's module) and given the fleet file's path as it does: the console
   reads the fleet file after its first frame, which shows the header, the grid saying
   "loading the fleet from ...", the event log and the keys. Also the time until the
   grid shows the whole fleet (the screen's refresh after it), and the CPU seconds used
   up to each, and the machine's load average around those runs (their wall time is the
   CPU seconds stretched by the load).

Also printed: the engine process's CPU (the engine-side goals belong to
bench/release_fleet.py) and the simulator's, and the machine's load averages (the
machine is shared: wall-time figures hold only with the load they were taken under).

The console runs the engine in a child process of its own (`console/engine/remote.py`);
both processes are measured. The simulated fleet runs in another child process, so its
CPU is not counted as the console's.

    .venv/bin/python bench/tui_load.py [--clusters 1000] [--readiness 20] [--max-parallel N]
                                       [--hogs N] [--sim-nice N] [--events FILE] [--all-cpus]

`--all-cpus` lets the engine process spread over every CPU (`RELEASE_CONSOLE_ALL_CPUS`;
it keeps to one otherwise, `console/engine/one_cpu.py`); the CPUs its threads were
allowed at the release's end are printed last.

Every cluster that did not end healthy is printed with the reason the engine gave, grouped,
and how long before its end the cluster was last heard from (its last progress event),
so a reader can tell a console that failed clusters from clusters that did not answer.
`--sim-nice -10` with `--hogs N` starves the console alone: the simulator (the clusters,
which in a real fleet run on other machines) gets the CPU before the busy processes, the
console competes with them (its engine process at nice 5, as always).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGIONS = ("eu", "us", "ap", "sa")
HOGS_WARMUP = 20.0   # s the --hogs run before the first frame (the load average follows)


def fleet_file(n: int, history: Path, rollout_timeout: str = "5m") -> str:
    """A fleet of `n` clusters: a few staging ones, the rest production in four regions."""
    lines = [
        "app:",
        "  name: user-service",
        "  image: registry.example.com/apps/user-service",
        f"  manifests: {ROOT / 'deploy' / 'user-service'}",
        '  namespace: "{cluster}"',
        f"  rollout_timeout: {rollout_timeout}",
        f"  history: {{path: {history}}}",
        "defaults:",
        "  values:",
        "    replicas: 3",
        "    resources: {requests: {cpu: 10m, memory: 16Mi}}",
        "clusters:",
    ]
    for i in range(n):
        region = REGIONS[i % len(REGIONS)]
        env = "staging" if i < max(1, n // 20) else "prod"
        lines.append(f"  - {{id: {env}-{region}-{i:03d}, groups: [{env}, {region}], "
                     "credentials: {kubeconfig: unused.yaml}}")
    return "\n".join(lines) + "\n"


def bytecode_env(compiled: bool = True) -> dict[str, str]:
    """The environment a console child runs in. `compiled`: with the console's bytecode
    compiled beforehand (next to the sources, in `__pycache__`, which git ignores), as
    `pip install .` compiles it at install time - a source checkout run with
    PYTHONDONTWRITEBYTECODE=1 (as on the shared machine) compiles every console module
    it imports again at each start, which is not what a user's console pays. Without
    `compiled`, the environment as it is."""
    env = dict(os.environ)
    if compiled:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "console")],
                       env=env, check=True, cwd=ROOT)
    return env


def serve_fleet(directory: str, readiness: float, jitter: float, nice: int = 15) -> None:
    """Child process: serve the fleet file's clusters until stdin closes."""
    from console.sim import SimFleet

    # The simulator stands in for remote clusters, which would not share the console's
    # CPU: it gets what the console leaves (`nice`).
    os.nice(nice)
    source = Path(directory) / "fleet.yaml"
    fleet = SimFleet.from_config(source, readiness_delay=readiness, jitter=jitter)
    fleet.start(timeout=120)
    path = fleet.write_kubeconfigs(Path(directory) / "kube", config_path=source)
    print(path, flush=True)
    sys.stdin.read()
    fleet.stop()


def first_frame_child(config: str) -> None:
    """Child process: start the console as `release-console ui --config FILE` would (its
    argument parser with every sub-command, then the app given the fleet file's path; only
    headless, not in a terminal), print the wall time of the fleet screen's first refresh
    and of its refresh with the whole fleet on it, quit."""
    from console.cli import build_parser, config_path
    from console.ui.app import ReleaseConsoleApp

    args = build_parser().parse_args(["ui", "--config", config])
    app = ReleaseConsoleApp(config_path(args), status_interval=0)

    async def refreshed() -> dict[str, float]:
        frame = asyncio.Event()
        app.fleet.call_after_refresh(frame.set)
        await frame.wait()
        return {"at": time.time(), "cpu": _process_cpu()}

    async def first_frame(_pilot: object) -> None:
        first = await refreshed()
        loading = app.state.loading is not None and not app.state.clusters
        await app.fleet_loaded.wait()
        fleet = await refreshed()
        print(json.dumps({"first_frame": first["at"], "cpu": first["cpu"],
                          "loading_shown": loading, "fleet_shown": fleet["at"],
                          "fleet_cpu": fleet["cpu"], "rows": len(app.fleet.grid.shown)}),
              flush=True)
        app.exit()

    app.run(headless=True, size=(160, 50), auto_pilot=first_frame)


def measure_first_frame(config_path: Path, env: dict[str, str], runs: int = 3
                        ) -> list[tuple[float, float, float, float]]:
    """(wall, CPU) seconds from launching a fresh interpreter (in `env`) to the fleet
    screen's first frame, then (wall, CPU) to its frame with the whole fleet, per run."""
    out = []
    for _ in range(runs):
        started = time.time()
        proc = subprocess.run([sys.executable, __file__, "--first-frame", str(config_path)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"the first-frame run printed nothing (exit {proc.returncode}):"
                               f"\n{proc.stderr[-3000:]}")
        seen = json.loads(lines[0])
        out.append((seen["first_frame"] - started, seen["cpu"],
                    seen["fleet_shown"] - started, seen["fleet_cpu"]))
    return out


def percentile(values: list[float], share: float) -> float:
    """The `share` percentile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


class Throttle:
    """Holds a process to `share` of the wall time: stopped (SIGSTOP) and let go
    (SIGCONT) in turn every `period` s - a console starved of CPU that burns none of the
    machine's, the clusters (the simulator) unaffected. Every thread of the process stops
    at once: its timers keep running on the wall clock, as a starved process's do."""

    def __init__(self, pid: int, share: float, period: float = 0.1) -> None:
        import signal
        import threading
        self.pid, self.share, self.period = pid, share, period
        self._stop = threading.Event()
        self._signal = signal
        self._thread = threading.Thread(target=self._run, name="throttle", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sig = self._signal
        try:
            while not self._stop.is_set():
                os.kill(self.pid, sig.SIGSTOP)
                self._stop.wait(self.period * (1 - self.share))
                os.kill(self.pid, sig.SIGCONT)
                self._stop.wait(self.period * self.share)
        except ProcessLookupError:
            return
        finally:
            try:
                os.kill(self.pid, sig.SIGCONT)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Let the process run freely again."""
        self._stop.set()
        self._thread.join()


async def drive(config_path: Path, max_parallel: int, throttle: float | None = None
                ) -> dict[str, object]:
    """Run the app headless, start a parallel release, press keys while it runs."""
    from textual import events

    from console.config import load
    from console.engine import ReleaseRequest
    from console.events import Event
    from console.ui.app import ReleaseConsoleApp

    config = load(config_path)
    app = ReleaseConsoleApp(config, status_interval=0, operator="bench")
    # Every event as it reaches the UI process (the failed clusters' story).
    seen: list[Event] = []
    extend = app.bridge.extend

    def keep(batch: list[Event]) -> None:
        seen.extend(batch)
        extend(batch)

    app.bridge.extend = keep      # type: ignore[method-assign]
    latencies: list[float] = []
    key_cpu: list[float] = []
    async with app.run_test(size=(160, 50)) as pilot:
        while not app._engine_ready.is_set():
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        request = ReleaseRequest(tag="v2", strategy="parallel", max_parallel=max_parallel,
                                 max_failures="100%", operator="bench")
        engine_pid = app.engine().pid
        cpu0, ui0, wall0 = _process_cpu(), time.thread_time(), time.monotonic()
        wall0_epoch = time.time()
        engine0 = _child_cpu(engine_pid)
        assert app.start_release(request)
        throttled = Throttle(engine_pid, throttle) if throttle else None
        grid = app.fleet.grid
        presses = 0
        refreshed = asyncio.Event()
        # The screen has updated once the cursor moved and the refresh after it ran;
        # a watcher on the cursor (no polling: it would cost the UI's CPU) asks for it.
        app.watch(grid, "cursor_row",
                  lambda: app.screen.call_after_refresh(refreshed.set), init=False)
        while app.release_running:
            # A key as the terminal driver delivers it. (Pilot.press waits for the whole
            # process to go idle, which never happens while 1,000 rollouts run.)
            key = "down" if presses % 2 == 0 else "up"
            refreshed.clear()
            started, cpu_started = time.perf_counter(), time.thread_time()
            app.post_message(events.Key(key, None))
            await refreshed.wait()
            latencies.append(time.perf_counter() - started)
            key_cpu.append(time.thread_time() - cpu_started)
            presses += 1
            await asyncio.sleep(0.1)
        if throttled is not None:
            throttled.stop()
        wall = time.monotonic() - wall0
        cpu, ui = _process_cpu() - cpu0, time.thread_time() - ui0
        engine_cpu = _child_cpu(engine_pid) - engine0
        engine_cpus = _allowed_cpus(engine_pid)
        phases: dict[str, int] = {}
        for row in app.state.clusters.values():
            phases[row.phase.value] = phases.get(row.phase.value, 0) + 1
        outcome = app.state.release.outcome if app.state.release else None
        errors = {row.id: row.error or row.message for row in app.state.clusters.values()
                  if row.phase.value != "healthy"}
        engine_log = app.engine().log_path
        engine_log_text = engine_log.read_text(errors="replace") if engine_log.exists() \
            else ""
    return {"wall": wall, "cpu": cpu, "ui": ui, "engine": engine_cpu,
            "engine_cpus": engine_cpus,
            "latencies": latencies, "key_cpu": key_cpu, "phases": phases,
            "outcome": outcome, "errors": errors, "events": seen, "started": wall0_epoch,
            "engine_log": engine_log_text}


def reason_key(reason: str) -> str:
    """A failure's reason with what differs between clusters (names, numbers) blotted
    out, so alike failures group."""
    import re
    text = re.sub(r"(prod|staging)-[a-z]{2}-\d+", "<cluster>", reason)
    text = re.sub(r"\d+(\.\d+)?", "#", text)
    return text[:160]


def failures_report(result: dict[str, object], out_path: str | None) -> list[str]:
    """Lines on every cluster that did not end healthy: the reasons grouped (with a
    count and an example), and each one's story in the events - since the release's
    start, when it started, its last event before failing, its failure, its rollback."""
    errors: dict[str, str] = result["errors"]         # type: ignore[assignment]
    events = result["events"]                          # type: ignore[assignment]
    started = float(result["started"])                 # type: ignore[arg-type]
    if out_path:
        with open(out_path, "w") as out:
            for event in events:
                out.write(json.dumps(event.to_json()) + "\n")
    if not errors:
        return ["  clusters not healthy: none"]
    groups: dict[str, list[str]] = {}
    for cid, reason in sorted(errors.items()):
        groups.setdefault(reason_key(reason), []).append(cid)
    lines = [f"  clusters not healthy: {len(errors)}, by reason (the engine's words):"]
    for key, cids in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"    {len(cids):5d}  {errors[cids[0]][:200]}  (e.g. {cids[0]})")
    # Each failed cluster's timeline (seconds after the release's start).
    story: dict[str, dict[str, float]] = {}
    for event in events:
        if event.cluster not in errors:
            continue
        mine = story.setdefault(event.cluster, {})
        kind = event.kind.value
        at = event.ts - started
        if kind == "cluster_failed" or kind == "cluster_unreachable":
            mine.setdefault("failed", at)
        elif "failed" not in mine:
            if kind == "cluster_started":
                mine["started"] = at
            mine["last"] = at
        if kind == "cluster_rolled_back":
            mine["rolled_back"] = at
    failed_at = sorted(s["failed"] for s in story.values() if "failed" in s)
    quiet = sorted(s["failed"] - s.get("last", s["failed"]) for s in story.values()
                   if "failed" in s)
    if failed_at:
        lines.append(f"    failed between {failed_at[0]:.1f} and {failed_at[-1]:.1f} s after "
                     f"the release started; last event before failing "
                     f"{quiet[0]:.1f}-{quiet[-1]:.1f} s earlier (median "
                     f"{statistics.median(quiet):.1f})")
    return lines


def _allowed_cpus(pid: int) -> str:
    """The CPUs each thread of `pid` may run on (`Cpus_allowed_list`), with how many
    threads, e.g. "1 (85 threads)"."""
    counts: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                cpus = line.split(":", 1)[1].strip()
                counts[cpus] = counts.get(cpus, 0) + 1
    return ", ".join(f"{cpus} ({n} threads)" for cpus, n in sorted(counts.items()))


def _child_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--readiness", type=float, default=20.0, help="pod readiness delay, s")
    parser.add_argument("--jitter", type=float, default=2.0)
    parser.add_argument("--max-parallel", type=int, default=None,
                        help="clusters rolling at once (default: all, as release_fleet.py)")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="time the first frame without the console's bytecode compiled "
                             "beforehand (each start compiles what it imports)")
    parser.add_argument("--hogs", type=int, default=0, metavar="N",
                        help="N busy-looping processes (nice 0) beside the console from the "
                             f"first-frame runs to the release's end, started {HOGS_WARMUP:g} s "
                             "before them: a loaded machine, the same each run (the "
                             "simulator then runs at nice 0 too)")
    parser.add_argument("--serve-fleet", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--first-frame", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--sim-nice", type=int, default=None, metavar="N",
                        help="the simulator's niceness (default 15, or 0 with --hogs); "
                             "-10 with --hogs: the clusters get the CPU before the busy "
                             "processes, the console competes with them (it starves the "
                             "console alone; root only)")
    parser.add_argument("--throttle-engine", type=float, default=None, metavar="SHARE",
                        help="hold the engine process to SHARE (0..1) of the wall time "
                             "during the release (stopped and let go every 0.1 s): a "
                             "starved console, deterministic, that burns no CPU")
    parser.add_argument("--rollout-timeout", default="5m", metavar="DURATION",
                        help="the fleet file's rollout_timeout (default 5m)")
    parser.add_argument("--events", metavar="FILE",
                        help="write every event the console received (JSON lines)")
    parser.add_argument("--all-cpus", action="store_true",
                        help="let the engine process spread over every CPU "
                             "(RELEASE_CONSOLE_ALL_CPUS=1)")
    args = parser.parse_args()
    if args.all_cpus:
        os.environ["RELEASE_CONSOLE_ALL_CPUS"] = "1"
    if args.serve_fleet:
        serve_fleet(args.serve_fleet, args.readiness, args.jitter,
                    15 if args.sim_nice is None else args.sim_nice)
        return 0
    if args.first_frame:
        first_frame_child(args.first_frame)
        return 0

    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    max_parallel = args.max_parallel or args.clusters
    with tempfile.TemporaryDirectory(prefix="tui-load-") as tmp:
        (Path(tmp) / "fleet.yaml").write_text(fleet_file(args.clusters, Path(tmp) / "history",
                                                       args.rollout_timeout))
        # With --hogs the simulator is not niced: behind busy processes at nice 0 it got
        # almost no CPU, and the release crawled (its clusters stand in for remote ones).
        sim_nice = str(args.sim_nice if args.sim_nice is not None else 0 if args.hogs else 15)
        sim = subprocess.Popen([sys.executable, __file__, "--serve-fleet", tmp,
                                "--readiness", str(args.readiness), "--jitter", str(args.jitter),
                                "--sim-nice", sim_nice],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        hogs: list[subprocess.Popen] = []
        hogs_cpu = 0.0
        try:
            config_path = Path(sim.stdout.readline().strip())
            env = bytecode_env(compiled=not args.no_bytecode)
            if args.hogs:
                # Once the fleet serves (the niced simulator would starve behind them).
                hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        for _ in range(args.hogs)]
                time.sleep(HOGS_WARMUP)
            frame_load = os.getloadavg()[0]
            frames = measure_first_frame(config_path, env)
            frame_load = (frame_load, os.getloadavg()[0])
            result = asyncio.run(drive(config_path, max_parallel, args.throttle_engine))
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        finally:
            for hog in hogs:
                hogs_cpu += _child_cpu(hog.pid)
                hog.kill()
                hog.wait()
            sim.stdin.close()
            sim.wait(timeout=60)
        sim_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)

    lat = [x * 1000 for x in result["latencies"]]
    key_cpu = [x * 1000 for x in result["key_cpu"]]
    wall = result["wall"]
    ui_share = 100 * result["cpu"] / wall
    p95 = percentile(lat, 0.95)
    first = max(f[0] for f in frames)
    print(f"tui_load: {args.clusters} clusters, parallel (max {max_parallel} at once), "
          f"pods ready after {args.readiness:g}s + up to {args.jitter:g}s; "
          f"load average at the end {load}"
          + (f"; {args.hogs} busy processes beside the console (--hogs)" if args.hogs else "")
          + f"; the simulator at nice {sim_nice}"
          + (f"; the engine held to {args.throttle_engine:g} of the wall time"
             if args.throttle_engine else ""))
    print(f"  release          {wall:6.1f} s wall, outcome {result['outcome']}, "
          f"phases {result['phases']}")
    for line in failures_report(result, args.events):
        print(line)
    if result["engine_log"]:
        print("  engine log (its stderr), last lines:")
        for line in str(result["engine_log"]).strip().splitlines()[-15:]:
            print(f"    {line[:240]}")
    print(f"  UI process CPU   {result['cpu']:6.2f} s = {ui_share:5.1f}% of one core "
          f"(its UI thread {result['ui']:.2f} s)                 goal < 25%: "
          f"{'met' if ui_share < 25 else 'MISSED'}")
    print(f"  key to frame     p95 {p95:6.1f} ms  (p50 {statistics.median(lat):.1f}, max "
          f"{max(lat):.1f}, {len(lat)} presses)       goal < 50 ms: "
          f"{'met' if p95 < 50 else 'MISSED'}")
    print(f"  (UI thread CPU between a key and its frame: p95 {percentile(key_cpu, 0.95):.1f} "
          f"ms, p50 {statistics.median(key_cpu):.1f}, max {max(key_cpu):.1f})")
    print(f"  first frame      {first:6.2f} s (worst of "
          f"{' '.join(f'{f[0]:.2f}' for f in frames)} s wall; CPU "
          f"{' '.join(f'{f[1]:.2f}' for f in frames)} s)   goal < 1 s: "
          f"{'met' if first < 1 else 'MISSED'}")
    print(f"  fleet shown      {max(f[2] for f in frames):6.2f} s (worst of "
          f"{' '.join(f'{f[2]:.2f}' for f in frames)} s wall; CPU "
          f"{' '.join(f'{f[3]:.2f}' for f in frames)} s; the first frame says \"loading "
          "the fleet\", the grid fills in after reading the fleet file)")
    print("  (first frame through `release-console ui`'s argument parser, "
          + ("with the console's bytecode compiled beforehand, as `pip "
                               "install .` does" if not args.no_bytecode else
                               "compiling the console at each start: --no-bytecode")
          + f"; 1-minute load average {frame_load[0]:.2f} before the first-frame runs, "
          f"{frame_load[1]:.2f} after)")
    print(f"  (not in the goals) engine process {result['engine']:.2f} s CPU, simulator "
          f"{sim_cpu.ru_utime + sim_cpu.ru_stime - hogs_cpu:.2f} s CPU (its own process; "
          "includes the first-frame runs)")
    print(f"  engine process threads' CPUs at the release's end: {result['engine_cpus']}"
          + (" (--all-cpus)" if args.all_cpus else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
