"""Closing releases a stopped console left open: what really happened, from the clusters.

A console killed mid-release leaves a `release` line without an `end`. At the next
start, `reconcile_unfinished` gives every target without an outcome one (`interrupted`
with its live version if it was touched, `skipped` if the console never reached it)
and ends the release `interrupted`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from console.events import Outcome
from console.history.reading import open_release_lines
from console.history.records import ClusterOutcome, HistoryError, Release

if TYPE_CHECKING:
    from console.history.ledger import Ledger


def running_here(rec: Mapping[str, Any]) -> bool:
    """Whether the process that wrote this `release` line is alive on this host."""
    pid = rec.get("pid")
    if rec.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True     # alive, run by another user
    return True


def unfinished(ledger: Ledger, open_here: set[str]) -> list[Release]:
    """Releases of `ledger` without an `end` record whose console is gone, oldest first.

    `open_here` are the releases this process records (not unfinished). A release
    still run by a live process on this host (another console sharing the ledger
    directory) is not listed either. Parses only the `release` and `end` lines, then the
    lines of the open releases: cheap enough for every console start, even on a big
    ledger.
    """
    started = open_release_lines([ledger.file])
    open_ids = {rid for rid, rec in started.items()
                if rid not in open_here and not running_here(rec)}
    return ledger.releases(ids=open_ids) if open_ids else []


def reconcile(ledger: Ledger, release_id: str,
              live: Mapping[str, str | None]) -> list[ClusterOutcome]:
    """Close an unfinished release with what really happened, then commit and push.

    `live` maps cluster id -> the version running there now (None: unreachable or
    unknown). Returns the records written.
    """
    release = next(iter(ledger.releases(ids={release_id})), None)
    if release is None:
        raise HistoryError(f"{ledger.file}: no release {release_id!r} to reconcile")
    if release.finished:
        return []
    written = []
    for cluster in release.targets:
        if release.outcome_of(cluster) is not None:
            continue
        actual = live.get(cluster)
        if cluster in release.touched or (actual is not None and actual == release.version):
            note = ("the console stopped mid-rollout; live version "
                    f"{actual}" if actual is not None else
                    "the console stopped mid-rollout; live version unknown")
            written.append(ledger.record_cluster(
                release_id, cluster, Outcome.INTERRUPTED, to_version=release.version,
                version=actual, good=False, error=note, reconciled=True, commit=False))
        else:
            written.append(ledger.record_cluster(
                release_id, cluster, Outcome.SKIPPED, to_version=release.version,
                version=None, error="the console stopped before reaching this cluster",
                reconciled=True, commit=False))
    ledger.finish_release(release_id, Outcome.INTERRUPTED, exit_code=None)
    return written


def reconcile_unfinished(
        ledger: Ledger, read_live: Callable[[Sequence[str]], Mapping[str, str | None]],
) -> list[Release]:
    """Close every release a dead console left open in `ledger`; returns them, closed.

    `read_live(cluster_ids)` returns the version running on each (None when
    unreachable or absent), e.g. from `Engine.status()`.
    """
    closed = []
    for release in ledger.unfinished():
        reconcile(ledger, release.id, read_live(release.targets))
        closed.extend(ledger.releases(ids={release.id}))
    return closed


__all__ = ["reconcile", "reconcile_unfinished", "running_here", "unfinished"]
