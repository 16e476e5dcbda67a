"""The release lease for manual actions: every action that changes a cluster holds it.

A manual rollback (one cluster, `--to V`, `--to last-good`, or every cluster a release
reached) takes the app's Lease on its clusters like a release does, all or nothing, so
it never races a release another console runs there: `LockHeld` (exit 2) names the
holder. Inside this engine's own running release (the TUI's rollback key while its
release runs) the action goes through that release instead: the release hands the
cluster over - its rollout there is interrupted, it is not started later, and neither
the automatic rollback nor an abort's rollback touches it again - and the action runs
under the release's lease, its events carrying the release's id.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from console.locks import ReleaseLock

if TYPE_CHECKING:
    from collections.abc import Sequence

    from console.engine.core import Engine
    from console.engine.waves import ReleaseRun

log = logging.getLogger(__name__)


class ActionLease:
    """`with ActionLease(engine, clusters, by, action_id) as held:` - the leases held
    (or the clusters handed over by a running release) for one manual action."""

    def __init__(self, engine: Engine, clusters: Sequence[str], by: str,
                 action_id: str) -> None:
        self.engine = engine
        self.clusters = list(clusters)
        self.by = by
        self.action_id = action_id
        self.runs: dict[str, ReleaseRun] = {}
        self.lock: ReleaseLock | None = None
        # Set when a lease this action holds is taken by another console: stop following.
        self.lost = threading.Event()

    def __enter__(self) -> ActionLease:
        runs = {cid: run for cid in self.clusters
                if (run := self.engine.run_holding(cid)) is not None}
        rest = [cid for cid in self.clusters if cid not in runs]
        if rest:
            clients: dict[str, tuple[Any, str]] = {}
            for cid in rest:
                driver = self.engine.driver(cid)
                clients[cid] = (driver.client, driver.namespace)
            lock = ReleaseLock.for_clusters(
                clients, self.engine.config.app.name, self.action_id, user=self.by or None,
                duration=self.engine.lock_duration, timeout=self.engine.request_timeout,
                on_lost=self._on_lost)
            lock.acquire(reentrant=True)     # LockHeld (a UserError) names the holder
            self.lock = lock
        # Only once every lease is ours: a refused action leaves running releases alone.
        for cid, run in runs.items():
            run.hand_over(cid, self.by, timeout=self.engine.request_timeout * 3)
        self.runs = runs
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lock is not None:
            for problem in self.lock.release():
                log.warning("%s: %s", self.action_id, problem)

    def release_id(self, cid: str, default: str = "") -> str:
        """The id the action's events carry: the running release it acts through, if any."""
        run = self.runs.get(cid)
        return run.release_id if run is not None else default

    def _on_lost(self, cid: str, why: str) -> None:
        log.warning("%s: release lock lost on %s: %s", self.action_id, cid, why)
        self.lost.set()
