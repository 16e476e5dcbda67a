"""Ledgers pushing to one bare Git remote at the same moment (the shards of one release
ending together, `deploy --shard`): every push gets through, by merging and pushing
again, and the remote ends with every record - on an empty remote (where the first
pushes race to create the branch) and on one that has history already."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from console.history import Ledger, Operator
from tests.history.conftest import APP, remote_records

PUSHERS = 6


def push_together(tmp_path: Path, remote: Path, tag: str) -> list:
    """PUSHERS ledgers (own clones of `remote`) each record one shard of a release, then
    all push at once; returns their push results."""
    ledgers = [Ledger(tmp_path / f"{tag}-clone-{k}", APP, remote=str(remote),
                      operator=Operator(f"shard{k}", f"shard{k}@example.com"))
               for k in range(PUSHERS)]
    try:
        for k, ledger in enumerate(ledgers):
            label = f"{k + 1}/{PUSHERS}"
            ledger.start_release(f"r-{tag}", version=tag, targets=[f"{tag}-c{k}"],
                                 shard=label)
            ledger.record_cluster(f"r-{tag}", f"{tag}-c{k}", "healthy")
            ledger.finish_release(f"r-{tag}", "ok", exit_code=0, push=False)
        start = threading.Barrier(PUSHERS)
        results: list = [None] * PUSHERS

        def push(k: int) -> None:
            start.wait(timeout=60)
            results[k] = ledgers[k].push()
        threads = [threading.Thread(target=push, args=(k,)) for k in range(PUSHERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        return results
    finally:
        for ledger in ledgers:
            ledger.close()


@pytest.mark.parametrize("history", [False, True], ids=["empty remote", "remote with history"])
def test_concurrent_pushes_all_land_and_read_as_one_release(tmp_path, bare_remote, history):
    if history:
        first = Ledger(tmp_path / "first", APP, remote=str(bare_remote))
        try:
            first.start_release("r-old", version="v0", targets=["old"])
            first.finish_release("r-old", "ok", exit_code=0)
        finally:
            first.close()
    results = push_together(tmp_path, bare_remote, "v1")
    assert all(r is not None and r.ok and r.pushed for r in results), \
        [r.message if r else "no result" for r in results]
    records = remote_records(bare_remote)
    clusters = sorted(r["cluster"] for r in records
                      if r["type"] == "cluster" and r["release"] == "r-v1")
    assert clusters == [f"v1-c{k}" for k in range(PUSHERS)]
    ends = [r for r in records if r["type"] == "end" and r["release"] == "r-v1"]
    assert sorted(e["shard"] for e in ends) == [f"{k}/{PUSHERS}" for k in range(1, PUSHERS + 1)]
    # A fresh clone reads the shards as one finished release of all their targets.
    reader = Ledger(tmp_path / "reader", APP, remote=str(bare_remote))
    try:
        (release,) = reader.releases(ids={"r-v1"})
    finally:
        reader.close()
    assert sorted(release.targets) == [f"v1-c{k}" for k in range(PUSHERS)]
    assert release.outcome == "ok" and release.finished
    assert {c.cluster for c in release.clusters} == set(release.targets)
