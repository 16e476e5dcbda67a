"""The version matrix and last-good lookups: the index agrees with a plain reading."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from console.history import HISTORY_DIR, LatestIndex

REPO = Path(__file__).resolve().parents[2]


def brute_force(path: Path, cluster: str) -> tuple[dict | None, dict | None]:
    """The latest record with a version and the latest good one, by reading everything."""
    recorded = good = None
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") != "cluster" or rec["cluster"] != cluster or rec["version"] is None:
            continue
        recorded = rec
        if rec["good"]:
            good = rec
    return recorded, good


def random_lines(rng: random.Random, count: int, start: int) -> list[str]:
    lines = []
    for n in range(start, start + count):
        cluster = rng.choice(["a", "b", "c", "d", "e"])
        if rng.random() < 0.3:
            lines.append(json.dumps({"type": "touch", "release": f"r{n}", "cluster": cluster},
                                    separators=(",", ":")))
            continue
        outcome = rng.choice(["healthy", "failed", "skipped", "rolled_back"])
        version = None if outcome == "skipped" else f"v{n}"
        lines.append(json.dumps({"type": "cluster", "release": f"r{n}", "cluster": cluster,
                                 "outcome": outcome, "version": version,
                                 "good": outcome == "healthy", "ts": f"t{n}"},
                                separators=(",", ":")))
    return lines


@pytest.mark.parametrize("block", [50, 4096])
def test_the_index_follows_appends_and_rewrites(tmp_path: Path, block: int) -> None:
    rng = random.Random(1234)
    path = tmp_path / "user-service.jsonl"
    store = tmp_path / "cache" / "index.json"
    written = random_lines(rng, 3000, 0)
    path.write_text("\n".join(written) + "\n")
    index = LatestIndex(path, store)
    # Small blocks: lines cross block boundaries (50 bytes: nearly every line does).
    index.BLOCK = block
    clusters = ["a", "b", "c", "d", "e", "never"]
    for step in range(30):
        wanted = rng.sample(clusters, rng.randint(1, len(clusters)))
        assert index.lookup(wanted) == {c: brute_force(path, c) for c in wanted}, step
        more = random_lines(rng, rng.randint(0, 40), len(written))
        written += more
        with open(path, "a") as handle:
            handle.write("".join(line + "\n" for line in more))
        if step % 7 == 6:
            # A merge rewrote the file (not an append): the cache must notice.
            rng.shuffle(written)
            path.write_text("\n".join(written) + "\n")
        if step % 5 == 4:
            # A new console process: the cache comes from disk.
            index = LatestIndex(path, store)
            index.BLOCK = block
    # A half-written last line is not read (and not cached as read).
    with open(path, "a") as handle:
        handle.write('{"type":"cluster","release":"x","cluster":"a","outcome":"healthy"')
    complete = path.read_text().rsplit("\n", 1)[0] + "\n"
    reference = tmp_path / "complete.jsonl"
    reference.write_text(complete)
    assert index.lookup(["a"])["a"] == brute_force(reference, "a")


def test_the_benchmark_runs_and_meets_its_target_on_a_small_ledger() -> None:
    out = subprocess.run([sys.executable, str(REPO / "bench" / "history_scale.py"),
                          "--releases", "300", "--clusters", "20", "--per-release", "5",
                          "--repeat", "2"], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "built 300 releases" in out.stdout
    assert "target: matrix under 200 ms -> met" in out.stdout


def test_matrix_rows_follow_outcomes(make_ledger) -> None:
    ledger = make_ledger()
    ledger.start_release("r1", version="1.0", targets=("a", "b", "c"), operator="alice")
    ledger.record_cluster("r1", "a", "healthy")
    ledger.record_cluster("r1", "b", "healthy")
    ledger.record_cluster("r1", "c", "healthy")
    ledger.finish_release("r1", "ok")
    ledger.start_release("r2", version="2.0", targets=("a", "b", "c"), operator="bob")
    ledger.record_cluster("r2", "a", "failed", error="crash loop")          # stays on 2.0
    ledger.record_cluster("r2", "b", "rolled_back", from_version="1.0",
                          rolled_back_to="1.0", error="pods not ready", good=True)
    ledger.record_cluster("r2", "c", "skipped", error="budget spent")      # unchanged
    ledger.finish_release("r2", "failed")
    rows = {r.cluster: r for r in ledger.matrix({"a": "2.0", "b": "1.0", "c": "1.0",
                                                 "d": "0.5", "e": None})}
    assert (rows["a"].recorded, rows["a"].last_good, rows["a"].recorded_by,
            rows["a"].drift) == ("2.0", "1.0", "bob", False)
    assert (rows["b"].recorded, rows["b"].last_good, rows["b"].recorded_by) == (
        "1.0", "1.0", "bob")
    assert (rows["c"].recorded, rows["c"].recorded_by, rows["c"].recorded_release) == (
        "1.0", "alice", "r1")
    assert (rows["d"].recorded, rows["d"].drift) == (None, True)    # deployed by hand
    assert (rows["e"].recorded, rows["e"].drift) == (None, False)   # live unknown
    assert ledger.last_good("a") == "1.0" and ledger.last_good("zz") is None
    # The cache lives in the ledger's .git, never in its commits.
    assert (ledger.path / ".git" / "release-console" / "user-service.latest.json").exists()
    assert not list((ledger.path / HISTORY_DIR).glob("*.json"))
