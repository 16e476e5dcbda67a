"""The engine listener that turns `console.events.Event`s into ledger records."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from console.events import Event, Kind, Outcome
from console.history.records import PushResult

if TYPE_CHECKING:
    from console.history.ledger import Ledger

class EventLedger:
    """An engine listener that turns `console.events.Event`s into ledger records.

    RELEASE_PLANNED is remembered; RELEASE_STARTED writes and commits the release (a
    HistoryError raised here must stop the release before it touches a cluster);
    CLUSTER_STARTED writes a `touch` line; CLUSTER_HEALTHY / CLUSTER_FAILED /
    CLUSTER_ROLLED_BACK / CLUSTER_SKIPPED write outcomes (an `outcome` key in the data
    overrides, e.g. `interrupted`); RELEASE_FINISHED ends the release and pushes.
    Rollback events of a release not open here are manual actions and are recorded as
    `rollback` actions. Push failures and other non-fatal problems go to `on_warning`.
    """

    def __init__(self, ledger: Ledger,
                 on_warning: Callable[[str], None] | None = None) -> None:
        """`on_warning(message: str)` receives push failures (default: ignored)."""
        self.ledger = ledger
        self.on_warning = on_warning
        self._lock = threading.Lock()
        self._planned: dict[str, dict[str, Any]] = {}
        self._started: set[str] = set()
        self._clusters: dict[tuple[str, str], dict[str, Any]] = {}
        self._bakes: dict[tuple[str, Any], float] = {}   # (release, wave) -> baking since

    def __call__(self, event: Event) -> None:
        """Record `event` (thread-safe)."""
        handler = {
            Kind.RELEASE_PLANNED: self._on_release_planned,
            Kind.RELEASE_STARTED: self._on_release_started,
            Kind.CLUSTER_STARTED: self._on_cluster_started,
            Kind.CLUSTER_HEALTHY: self._on_cluster_healthy,
            Kind.CLUSTER_FAILED: self._on_cluster_failed,
            Kind.CLUSTER_SKIPPED: self._on_cluster_skipped,
            Kind.CLUSTER_ROLLING_BACK: self._on_cluster_rolling_back,
            Kind.CLUSTER_ROLLED_BACK: self._on_cluster_rolled_back,
            Kind.RELEASE_FINISHED: self._on_release_finished,
            Kind.GATE_DECIDED: self._on_steered,
            Kind.PAUSED: self._on_steered,
            Kind.RESUMED: self._on_steered,
            Kind.STEERED: self._on_steered,
            Kind.WAVE_BAKING: self._on_wave_baking,
            Kind.WAVE_BAKED: self._on_wave_baked,
        }.get(event.kind)
        if handler is not None:
            with self._lock:
                handler(event)

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)

    def _on_release_planned(self, event: Event) -> None:
        self._planned[event.release_id] = dict(event.data)

    def _on_release_started(self, event: Event) -> None:
        data = {**self._planned.pop(event.release_id, {}), **event.data}
        self.ledger.start_release(event.release_id, version=str(data.get("version", "?")),
                                  image=str(data.get("image", "")),
                                  strategy=str(data.get("strategy", "")),
                                  targets=tuple(data.get("targets") or ()),
                                  operator=str(data.get("operator") or ""),
                                  freeze_override=data.get("freeze_override"),
                                  digest=data.get("digest"),
                                  shard=data.get("shard") or None)
        self._started.add(event.release_id)

    def _on_cluster_started(self, event: Event) -> None:
        if event.release_id not in self._started or event.cluster is None:
            return
        state = self._clusters.setdefault((event.release_id, event.cluster), {})
        state.update(from_version=event.data.get("from_version"),
                     to_version=event.data.get("to_version"))
        self.ledger.touch_cluster(event.release_id, event.cluster,
                                  from_version=event.data.get("from_version"),
                                  to_version=event.data.get("to_version"))

    def _on_cluster_healthy(self, event: Event) -> None:
        if event.release_id not in self._started or event.cluster is None:
            return
        self.ledger.record_cluster(event.release_id, event.cluster,
                                   event.data.get("outcome", Outcome.HEALTHY),
                                   version=event.data.get("version"),
                                   duration=event.data.get("duration"),
                                   helm_revision=event.data.get("helm_revision"),
                                   digest=event.data.get("digest"))

    def _on_cluster_failed(self, event: Event) -> None:
        if event.release_id not in self._started or event.cluster is None:
            return
        state = self._clusters.setdefault((event.release_id, event.cluster), {})
        state["error"] = event.data.get("error") or event.message
        state["duration"] = event.data.get("duration")
        self.ledger.record_cluster(event.release_id, event.cluster,
                                   event.data.get("outcome", Outcome.FAILED),
                                   error=state["error"], duration=state["duration"])

    def _on_cluster_skipped(self, event: Event) -> None:
        if event.release_id not in self._started or event.cluster is None:
            return
        self.ledger.record_cluster(event.release_id, event.cluster,
                                   event.data.get("outcome", Outcome.SKIPPED),
                                   error=event.data.get("reason") or event.message)

    def _on_cluster_rolling_back(self, event: Event) -> None:
        if event.cluster is None:
            return
        state = self._clusters.setdefault((event.release_id, event.cluster), {})
        state["rollback_from"] = event.data.get("from_version")
        state["rollback_to"] = event.data.get("to_version")
        state["rollback_start"] = event.ts

    def _on_cluster_rolled_back(self, event: Event) -> None:
        if event.cluster is None:
            return
        state = self._clusters.pop((event.release_id, event.cluster), {})
        ok = bool(event.data.get("ok", True))
        target = event.data.get("version") or state.get("rollback_to")
        error = " ; ".join(filter(None, [state.get("error"),
                                         None if ok else
                                         f"rollback failed: {event.data.get('error', '')}"]))
        if event.release_id in self._started:
            # A failed rollback leaves the cluster somewhere between the two versions
            # (often unreachable): the ledger says "unknown", never the version tried.
            self.ledger.record_cluster(
                event.release_id, event.cluster, Outcome.ROLLED_BACK if ok else Outcome.FAILED,
                from_version=state.get("from_version"), to_version=state.get("to_version"),
                version=target if ok else None, good=ok, duration=state.get("duration"),
                error=error, rolled_back_to=target if ok else None, version_unknown=not ok,
                helm_revision=event.data.get("helm_revision") if ok else None,
                digest=event.data.get("digest") if ok else None)
            return
        # A manual rollback (one cluster, or every cluster of a finished release).
        started = state.get("rollback_start")
        self.ledger.record_rollback(
            event.cluster, from_version=state.get("rollback_from"), to_version=target,
            outcome=Outcome.HEALTHY if ok else Outcome.FAILED, error=error,
            duration=None if started is None else event.ts - started,
            of_release=event.release_id or None, operator=str(event.data.get("by") or ""),
            on_pushed=self._pushed,
            helm_revision=event.data.get("helm_revision") if ok else None,
            digest=event.data.get("digest") if ok else None)

    def _on_wave_baking(self, event: Event) -> None:
        self._bakes[(event.release_id, event.data.get("wave"))] = event.ts

    def _on_wave_baked(self, event: Event) -> None:
        started = self._bakes.pop((event.release_id, event.data.get("wave")), None)
        if event.release_id not in self._started:
            return
        from console.history.records import iso_time
        self.ledger.record_bake(event.release_id, wave=int(event.data.get("wave") or 0),
                                seconds=float(event.data.get("seconds") or 0),
                                ok=bool(event.data.get("ok")),
                                failed=list(event.data.get("failed") or ()),
                                completed=bool(event.data.get("completed", True)),
                                start=None if started is None else iso_time(started))

    def _on_steered(self, event: Event) -> None:
        if event.release_id not in self._started:
            return
        action = str(event.data.get("action") or event.data.get("decision")
                     or event.kind.value)
        if event.kind is Kind.GATE_DECIDED:
            action = f"gate_{action}"
        self.ledger.record_steer(event.release_id, action, str(event.data.get("by") or ""),
                                 cluster=event.cluster, detail=event.message,
                                 confirmed=event.data.get("confirmed"),
                                 refused=event.data.get("refused"))

    def _on_release_finished(self, event: Event) -> None:
        # A release that failed pre-flight was planned but never started: forget it too,
        # or a long console session keeps every such plan.
        self._planned.pop(event.release_id, None)
        if event.release_id not in self._started:
            return  # pre-flight failed: nothing was touched, nothing to record
        self._started.discard(event.release_id)
        for key in [k for k in self._clusters if k[0] == event.release_id]:
            del self._clusters[key]
        code = event.data.get("exit_code")
        self._pushed(self.ledger.finish_release(
            event.release_id, str(event.data.get("outcome", "unknown")),
            exit_code=None if code is None else int(code)))

    def _pushed(self, result: PushResult) -> None:
        if not result.ok:
            self._warn(f"history: {result.message} (the record is kept locally; "
                       "`release-console history --sync` retries)")


__all__ = ["EventLedger"]
