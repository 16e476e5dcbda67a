"""The reading side of the Ledger: releases and their history, unfinished releases and
their reconciliation, the version matrix and the last good version of a cluster, and the
steering, bake and drill records.

`LedgerReading` is a base class of `console.history.ledger.Ledger`; it reads what the
Ledger's writing methods recorded (the record files, the `LatestIndex`) and holds no
state of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from console.history import reading, reconcile
from console.history.latest import LatestIndex
from console.history.reading import record_files
from console.history.records import (BAKE_PREFIX, DRILL_PREFIX, STEER_PREFIX, ClusterOutcome,
                                     MatrixRow, Release)


class LedgerReading:
    """The Ledger's queries (see the module doc); the attributes are the Ledger's."""

    path: Path
    file: Path          # this app's record file
    app: str
    latest: LatestIndex
    _lock: threading.RLock
    _open: dict[str, Any]

    def releases(self, *, cluster: str | None = None, app: str | None = None,
                 since: str | None = None, ids: set[str] | None = None) -> list[Release]:
        """Releases and manual actions, oldest first, optionally filtered.

        `app=None` is this ledger's app, `"*"` every app in the repository; `since` is
        anything `parse_since` takes (`7d`, `2026-11-01`, an ISO time); `cluster` keeps
        releases that targeted it and only that cluster's outcome; `ids` keeps only those
        releases.
        """
        return reading.releases(record_files(self.path, app or self.app), cluster=cluster,
                                since=since, ids=ids)

    history = releases

    def unfinished(self) -> list[Release]:
        """Releases without an `end` record whose console is gone, oldest first.

        A release still run by a live process on this host (another console sharing the
        ledger directory) is not listed: it is not unfinished, only not finished yet.
        """
        with self._lock:
            open_here = set(self._open)
        return reconcile.unfinished(self, open_here)

    def reconcile(self, release_id: str, live: Mapping[str, str | None]) -> list[ClusterOutcome]:
        """Close an unfinished release with what really happened, then commit and push.

        `live` maps cluster id -> the version running there now (None: unreachable or
        unknown). Every target without an outcome gets one: `interrupted` with the live
        version if it was touched (or already runs the new version), else `skipped`
        (the console died before reaching it). Returns the records written.
        """
        return reconcile.reconcile(self, release_id, live)

    def reconcile_unfinished(
            self, read_live: Callable[[Sequence[str]], Mapping[str, str | None]],
    ) -> list[Release]:
        """At start: close every release a dead console left open; returns them, closed.

        `read_live(cluster_ids)` returns the version running on each (None when
        unreachable or absent), e.g. from `Engine.status()`.
        """
        return reconcile.reconcile_unfinished(self, read_live)

    def matrix(self, live: Mapping[str, str | None],
               helm: Mapping[str, int | None] | None = None,
               digests: Mapping[str, str | None] | None = None) -> list[MatrixRow]:
        """The version matrix: per cluster in `live` (in its order), live vs. ledger.

        `helm` (apps shipped as a chart): each cluster's live Helm revision; one that
        differs from the revision the ledger recorded is drift too (a `helm upgrade` or
        `helm rollback` made outside the console, even to the same version).
        `digests`: each cluster's live image digest; one other than the digest the
        ledger recorded there is digest drift (the same tag, other bits: a re-pushed tag
        pulled by a restart or an edit outside the console).

        Served by `LatestIndex`: the cost follows what was appended since the last
        query, not the size of the ledger.
        """
        found = self.latest.lookup(list(live))
        rows = []
        for cluster, live_version in live.items():
            recorded, good = found.get(cluster, (None, None))
            recorded_revision = recorded.get("helm_revision") if recorded else None
            live_revision = (helm or {}).get(cluster)
            helm_drift = (live_version is not None and live_revision is not None
                          and recorded_revision is not None
                          and live_revision != recorded_revision)
            recorded_digest = recorded.get("digest") if recorded else None
            live_digest = (digests or {}).get(cluster)
            digest_drift = (digests is not None and cluster in digests
                            and live_version is not None and recorded is not None
                            and live_version == recorded.get("version")
                            and recorded_digest is not None
                            and live_digest != recorded_digest)
            rows.append(MatrixRow(
                cluster=cluster, live=live_version,
                recorded=recorded["version"] if recorded else None,
                recorded_at=recorded["ts"] if recorded else None,
                recorded_by=recorded.get("operator") if recorded else None,
                recorded_release=recorded["release"] if recorded else None,
                last_good=good["version"] if good else None,
                last_good_at=good["ts"] if good else None,
                drift=helm_drift or digest_drift or (
                    live_version is not None and
                    live_version != (recorded["version"] if recorded else None)),
                recorded_helm_revision=recorded_revision, recorded_digest=recorded_digest,
                live_digest=live_digest, digest_drift=digest_drift))
        return rows

    def last_good(self, cluster: str) -> str | None:
        """The last version recorded healthy on `cluster` (for `rollback --to last-good`)."""
        _, good = self.latest.lookup([cluster])[cluster]
        return good["version"] if good else None

    def steering(self, release_id: str | None = None) -> list[dict[str, Any]]:
        """The recorded steering actions (of one release), oldest first."""
        return [rec for rec in reading.records([self.file], prefixes=(STEER_PREFIX,))
                if release_id is None or rec.get("release") == release_id]

    def bakes(self, release_id: str | None = None) -> list[dict[str, Any]]:
        """The recorded bakes (of one release), oldest first."""
        return [rec for rec in reading.records([self.file], prefixes=(BAKE_PREFIX,))
                if release_id is None or rec.get("release") == release_id]

    def drills(self) -> list[dict[str, Any]]:
        """The recorded rollback drills, oldest first."""
        return list(reading.records([self.file], prefixes=(DRILL_PREFIX,)))
