"""The UI thread alone under a 1,000-cluster release (`python bench/ui_events.py`).

`bench/tui_load.py` runs the whole console (engine process, simulated fleet) and shares
the machine with them; this one measures what the UI thread itself does per key and per
frame: the real app, headless at 160x50, on a fleet file of N clusters, with no engine
process - a release's events (planned, pre-flight, each cluster started, its progress
and healthy: six per cluster, the starts spread over 8 s, pods ready after 20-22 s) are
pickled beforehand and fed to the app's event bridge from a thread in batches every
50 ms (at most 500), unpickled there, as the engine process's reader does. A key
(down/up) is posted every 100 ms and timed until the screen has refreshed with its
effect. Prints the key-to-frame percentiles, the UI thread's CPU between each key and
its frame (what the app put in the key's way, whatever the load), the UI thread's CPU
seconds, the collector's passes (CPU ms) and the load average.

    .venv/bin/python bench/ui_events.py [--clusters 1000] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from tui_load import fleet_file, percentile  # noqa: E402

from console.config import load  # noqa: E402
from console.events import Event, Kind  # noqa: E402
from console.ui.app import ReleaseConsoleApp  # noqa: E402


class UiOnlyApp(ReleaseConsoleApp):
    """The console without its engine process: events come from the feeder thread."""

    CSS_PATH = str(Path(sys.modules[ReleaseConsoleApp.__module__].__file__).parent
                   / ReleaseConsoleApp.CSS_PATH)

    def _start_engine(self) -> None:
        self._engine_ready.set()


def release_events(ids: list[str], rid: str = "bench-1") -> list[tuple[float, bytes]]:
    """(seconds from the start, pickled batch) of one parallel release of `ids`."""
    timed: list[tuple[float, Event]] = [
        (0.0, Event(Kind.RELEASE_PLANNED, rid, None, "planned",
                    {"targets": ids, "waves": [{"clusters": ids}], "version": "v2",
                     "strategy": "parallel", "operator": "bench"})),
        (0.1, Event(Kind.PREFLIGHT_STARTED, rid, None, "pre-flight")),
        (2.5, Event(Kind.PREFLIGHT_FINISHED, rid, None, "pre-flight ok", {"ok": True})),
        (2.6, Event(Kind.WAVE_STARTED, rid, None, "wave 1", {"wave": 0}))]
    for i, cid in enumerate(ids):
        start = 2.7 + 8.0 * i / max(1, len(ids))
        timed.append((start, Event(Kind.CLUSTER_STARTED, rid, cid, f"deploying v2 to {cid}",
                                   {"to_version": "v2", "from_version": "v1", "wave": 0})))
        timed.append((start + 1.0, Event(
            Kind.CLUSTER_PROGRESS, rid, cid, "waiting: 0 of 3 updated replicas available",
            {"desired": 3, "updated": 3, "ready": 0, "available": 0})))
        ready = start + 20.0 + (i * 7919 % 200) / 100
        for k in (1, 2, 3):
            timed.append((ready + k * 0.05, Event(
                Kind.CLUSTER_PROGRESS, rid, cid, f"waiting: {k} of 3 updated replicas available",
                {"desired": 3, "updated": 3, "ready": k, "available": k})))
        timed.append((ready + 0.3, Event(Kind.CLUSTER_HEALTHY, rid, cid, "healthy",
                                         {"version": "v2", "duration": 21.0})))
    timed.sort(key=lambda pair: pair[0])
    batches: list[tuple[float, list[Event]]] = []
    for at, event in timed:
        if not batches or at >= batches[-1][0] + 0.05 or len(batches[-1][1]) >= 500:
            batches.append((at, []))
        batches[-1][1].append(event)
    last = batches[-1][0] + 0.5
    batches.append((last, [Event(Kind.RELEASE_FINISHED, rid, None, "done", {"outcome": "ok"})]))
    return [(at, pickle.dumps(batch)) for at, batch in batches]


async def run_once(config_path: Path) -> dict[str, object]:
    """One release's events through the app, keys every 100 ms; the figures."""
    config = load(config_path)
    app = UiOnlyApp(config, status_interval=0, operator="bench")
    batches = release_events([c.id for c in config.clusters])
    latencies: list[float] = []
    key_cpu: list[float] = []
    collections: list[float] = []
    started_gc: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if phase == "start":
            started_gc[:] = [time.thread_time()]
        elif started_gc and info["generation"] == 2:
            collections.append((time.thread_time() - started_gc[0]) * 1000)

    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause(0.2)
        fed = threading.Event()

        def feed() -> None:
            began = time.monotonic()
            for at, blob in batches:
                wait = began + at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                app.bridge.extend(pickle.loads(blob))
            fed.set()

        refreshed = asyncio.Event()
        app.watch(app.fleet.grid, "cursor_row",
                  lambda: app.screen.call_after_refresh(refreshed.set), init=False)
        gc.callbacks.append(on_gc)
        ui0, wall0 = time.thread_time(), time.monotonic()
        threading.Thread(target=feed, name="feeder", daemon=True).start()
        presses = 0
        try:
            while not fed.is_set() or app.bridge.pending:
                refreshed.clear()
                began, cpu_began = time.perf_counter(), time.thread_time()
                app.post_message(events_key("down" if presses % 2 == 0 else "up"))
                await refreshed.wait()
                latencies.append((time.perf_counter() - began) * 1000)
                key_cpu.append((time.thread_time() - cpu_began) * 1000)
                presses += 1
                await asyncio.sleep(0.1)
        finally:
            gc.callbacks.remove(on_gc)
        ui, wall = time.thread_time() - ui0, time.monotonic() - wall0
        healthy = sum(1 for row in app.state.clusters.values() if row.phase.value == "healthy")
    return {"latencies": latencies, "key_cpu": key_cpu, "ui": ui, "wall": wall, "gc2": collections,
            "healthy": healthy, "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def events_key(key: str) -> object:
    """A key as the terminal driver delivers it."""
    from textual import events
    return events.Key(key, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    with tempfile.TemporaryDirectory(prefix="ui-events-") as tmp:
        config_path = Path(tmp) / "fleet.yaml"
        config_path.write_text(fleet_file(args.clusters, Path(tmp) / "history"))
        for run in range(1, args.runs + 1):
            got = asyncio.run(run_once(config_path))
            lat = got["latencies"]
            gc2 = got["gc2"]
            print(f"ui_events run {run}: {args.clusters} clusters, {got['healthy']} healthy; "
                  f"load average at the end {got['load']}")
            print(f"  key to frame  p95 {percentile(lat, 0.95):6.1f} ms (p50 "
                  f"{statistics.median(lat):.1f}, max {max(lat):.1f}, {len(lat)} presses)"
                  f"   goal < 50 ms: {'met' if percentile(lat, 0.95) < 50 else 'MISSED'}")
            cpu = got["key_cpu"]
            print(f"  UI thread CPU between a key and its frame: p95 {percentile(cpu, 0.95):.1f} "
                  f"ms (p50 {statistics.median(cpu):.1f}, max {max(cpu):.1f})")
            print(f"  UI thread     {got['ui']:.2f} CPU s over {got['wall']:.1f} s "
                  f"({100 * got['ui'] / got['wall']:.1f}% of a core)")
            print(f"  full GC passes {len(gc2)}: " + (f"{sum(gc2):.0f} CPU ms, the longest "
                                                      f"{max(gc2):.0f} ms" if gc2 else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
