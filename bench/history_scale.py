"""How fast is the version matrix on a big ledger? (`python bench/history_scale.py`)

Builds a ledger of 10,000 releases of one app over a fleet of 200 clusters (each
release reaches 20 clusters; about 5% of cluster results fail and roll back) by writing
the JSON Lines file directly and committing it once, then times `Ledger.matrix()` for
the whole fleet: by a console opening the ledger for the first time (no index yet), again,
by a later console (index on disk), with one cluster the ledger has never seen (the
whole file is read once), and `last_good()`; the exit status is 1 when one misses the target, the matrix under
200 ms. It also prints, outside the target, the worst case: a fleet none of whose
clusters was ever released (every line is looked at once, then the answers are cached).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from console.history import HISTORY_DIR, Ledger
from console.history.records import iso_time as _iso
from console.history.repository import Subject

APP = "user-service"


def ledger_lines(releases: int, fleet: list[str], per_release: int,
                 seed: int = 7) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The records of `releases` releases over `fleet` (each release reaching
    `per_release` clusters, about 5% of results rolled back), and what each cluster runs
    after the last one."""
    rng = random.Random(seed)
    clusters = len(fleet)
    current = {name: "0.0.0" for name in fleet}
    start = time.time() - releases * 3600
    lines: list[dict[str, Any]] = []
    for n in range(releases):
        version, release_id = f"1.{n // 100}.{n % 100}", f"r{n:05d}"
        ts = _iso(start + n * 3600)
        first = (n * per_release) % clusters
        targets = [fleet[(first + k) % clusters] for k in range(per_release)]
        lines.append({"type": "release", "v": 1, "id": release_id, "app": APP,
                      "kind": "release", "version": version, "image": f"reg/{APP}",
                      "strategy": "parallel", "targets": targets, "operator": "bench",
                      "operator_email": "bench@example", "start": ts})
        failed = 0
        for cluster in targets:
            lines.append({"type": "touch", "release": release_id, "cluster": cluster,
                          "from_version": current[cluster], "to_version": version, "ts": ts})
            if rng.random() < 0.05:
                failed += 1
                lines.append({"type": "cluster", "release": release_id, "cluster": cluster,
                              "outcome": "rolled_back", "from_version": current[cluster],
                              "to_version": version, "version": current[cluster],
                              "good": True, "duration": 30.0, "error": "pods not ready",
                              "rolled_back_to": current[cluster], "operator": "bench",
                              "ts": ts})
            else:
                lines.append({"type": "cluster", "release": release_id, "cluster": cluster,
                              "outcome": "healthy", "from_version": current[cluster],
                              "to_version": version, "version": version, "good": True,
                              "duration": 12.5, "error": "", "rolled_back_to": None,
                              "operator": "bench", "ts": ts})
                current[cluster] = version
        lines.append({"type": "end", "release": release_id,
                      "outcome": "failed" if failed else "ok", "exit_code": 1 if failed else 0,
                      "end": ts})
    return lines, current


def write_ledger(path: Path, lines: list[dict[str, Any]], subject: str) -> None:
    """Write `lines` as the app's record file of a Git ledger at `path`, one commit."""
    ledger = Ledger(path, APP)
    target = path / HISTORY_DIR / f"{APP}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as handle:
        for rec in lines:
            handle.write(json.dumps(rec, separators=(",", ":")) + "\n")
    ledger._request_commit(Subject(subject))
    ledger.close()


def build(path: Path, releases: int, clusters: int, per_release: int, seed: int = 7) -> int:
    """Write a ledger of `releases` releases at `path` and commit it; return its line count."""
    fleet = [f"c{n:03d}" for n in range(clusters)]
    lines, _current = ledger_lines(releases, fleet, per_release, seed)
    write_ledger(path, lines, f"bench: {releases} releases")
    return len(lines)


def timed(func: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(first run, median of `repeat` runs) in milliseconds, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        began = time.perf_counter()
        result = func()
        times.append((time.perf_counter() - began) * 1000)
    return times[0], statistics.median(times), result


def main() -> int:
    """Build the ledger, time the queries, print the figures; exit 1 over the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--per-release", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="history-scale-") as tmp:
        path = Path(tmp) / "ledger"
        began = time.perf_counter()
        count = build(path, args.releases, args.clusters, args.per_release)
        size = (path / HISTORY_DIR / f"{APP}.jsonl").stat().st_size
        print(f"built {args.releases} releases ({count} lines, {size / 1e6:.1f} MB, one commit)"
              f" in {time.perf_counter() - began:.1f} s")
        fleet = {f"c{n:03d}": "1.0.0" for n in range(args.clusters)}
        figures = {}
        # A console that opens this ledger for the first time: no index yet.
        ledger = Ledger(path, APP)
        figures["matrix, no index yet"], _, rows = timed(lambda: ledger.matrix(fleet), 1)
        _, figures["matrix, same console again"], _ = timed(lambda: ledger.matrix(fleet),
                                                            args.repeat)
        ledger.close()
        # A later console: the index comes from .git/release-console/.
        ledger = Ledger(path, APP)
        figures["matrix, new console, index on disk"], _, _ = timed(
            lambda: ledger.matrix(fleet), 1)
        unseen = dict(fleet, **{"never-released": "1.0.0"})
        figures["matrix + a cluster never released (whole file read)"], _, _ = timed(
            lambda: ledger.matrix(unseen), 1)
        _, figures["the same, again"], _ = timed(lambda: ledger.matrix(unseen), args.repeat)
        # Outside the target: a fleet none of whose clusters is in this ledger (every
        # line looked at once; the answers are cached afterwards).
        strangers = {f"new-{n:03d}": "1.0.0" for n in range(args.clusters)}
        worst_case, _, _ = timed(lambda: ledger.matrix(strangers), 1)
        _, worst_again, _ = timed(lambda: ledger.matrix(strangers), args.repeat)
        _, figures["last_good(c000)"], good = timed(lambda: ledger.last_good("c000"),
                                                    args.repeat)
        ledger.close()
        drift = sum(1 for row in rows if row.drift)
        print(f"matrix rows: {len(rows)} clusters, {drift} drifted; last_good(c000) = {good}")
        for name, value in figures.items():
            print(f"  {name:<55} {value:8.1f} ms")
        print(f"  (not in the target) {args.clusters} clusters never released: first "
              f"{worst_case:.1f} ms, then {worst_again:.1f} ms")
        worst = max(figures.values())
        print(f"target: matrix under 200 ms -> {'met' if worst < 200 else 'MISSED'} "
              f"(worst {worst:.1f} ms)")
        return 0 if worst < 200 else 1


if __name__ == "__main__":
    sys.exit(main())
