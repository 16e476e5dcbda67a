"""A rollback drill on a local fleet: bring each cluster to its baseline, release a drill
tag that fails where asked, and time how long detection and rollback took.

`rehearse()` runs on a fleet file that points at a *local* fleet (the simulator or the
lab, started by `console.cli.drill_cmd`, with the drill tag made to fail on the chosen
clusters); it never opens the ledger nor a session, so nothing of the drill is recorded
as a release. The caller records the `DrillResult` as a drill.

Per cluster: `detect_s` is from the cluster's start to its failure being seen (the
fail-fast grace or the rollout timeout), `rollback_s` from the rollback's start to the
cluster being healthy on its baseline again; a rollback is `ok` when it worked within
`app.rollout_timeout` and the cluster runs its baseline again afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest
from console.engine.api import GateRequest
from console.events import Event, Kind, Outcome

PLACEHOLDER = "drill-baseline"   # the baseline of a cluster the ledger knows nothing of


@dataclass(frozen=True)
class ClusterDrill:
    """How one cluster fared in the drill."""

    cluster: str
    role: str                    # "fail": the drill tag fails here; "release": it should not
    baseline: str
    outcome: str                 # the drill release's outcome on this cluster
    detect_s: float | None = None
    rollback_s: float | None = None
    ok: bool = True
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """For `--json` and the ledger's `drill` line."""
        return {"cluster": self.cluster, "role": self.role, "baseline": self.baseline,
                "outcome": self.outcome,
                "detect_s": None if self.detect_s is None else round(self.detect_s, 3),
                "rollback_s": None if self.rollback_s is None else round(self.rollback_s, 3),
                "ok": self.ok, "error": self.error}


@dataclass(frozen=True)
class DrillResult:
    """The drill: every cluster's timings, and whether every rollback worked in time."""

    tag: str
    strategy: str
    rollout_timeout: float   # s: what every detection and rollback is held to
    clusters: tuple[ClusterDrill, ...]
    release_outcome: str
    message: str = ""

    @property
    def ok(self) -> bool:
        """Every failed cluster was rolled back within the rollout timeout."""
        return all(c.ok for c in self.clusters)

    @property
    def exit_code(self) -> int:
        """0 when every rollback worked within the limits, else 1."""
        return 0 if self.ok else 1


@dataclass
class Timings:
    """An engine listener noting when each cluster started, failed and rolled back."""

    started: dict[str, float] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)
    rolling: dict[str, float] = field(default_factory=dict)
    rolled: dict[str, tuple[float, bool, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> None:
        if event.cluster is None:
            return
        with self.lock:
            if event.kind is Kind.CLUSTER_STARTED:
                self.started[event.cluster] = event.ts
            elif event.kind is Kind.CLUSTER_FAILED:
                self.failed.setdefault(event.cluster, event.ts)
            elif event.kind is Kind.CLUSTER_ROLLING_BACK:
                self.rolling.setdefault(event.cluster, event.ts)
            elif event.kind is Kind.CLUSTER_ROLLED_BACK:
                self.rolled[event.cluster] = (event.ts, bool(event.data.get("ok")),
                                              str(event.data.get("error") or ""))


def approve_own_gates(_request: GateRequest) -> GateAnswer:
    """A drill approves its own gates: it rehearses the whole release."""
    return GateAnswer(GateDecision.APPROVE, by="drill")


def set_baseline(engine: Engine, baseline: Mapping[str, str]) -> list[str]:
    """Bring each cluster to its baseline version (one parallel release per version);
    returns the problems (empty when every cluster runs its baseline)."""
    problems = []
    by_version: dict[str, list[str]] = {}
    for cid, version in baseline.items():
        by_version.setdefault(version, []).append(cid)
    for version, ids in by_version.items():
        result = engine.run(ReleaseRequest(tag=version, clusters=",".join(ids),
                                           strategy="parallel", max_parallel=len(ids),
                                           operator="drill"), approve_own_gates)
        if result.exit_code != 0:
            failed = [f"{c.cluster}: {c.error or c.outcome}" for c in result.clusters
                      if c.outcome is not Outcome.HEALTHY]
            failed += [f"{r.cluster or 'release'}: {r.check}: {r.detail}" for r in
                       (result.preflight.failures if result.preflight else ())]
            problems.append(f"baseline {version}: " + ("; ".join(failed) or result.message))
    return problems


def rehearse(engine: Engine, tag: str, fail: Sequence[str], baseline: Mapping[str, str],
             strategy: str, listeners: Sequence[Callable[[Event], None]] = ()) -> DrillResult:
    """Release `tag` (which fails on the `fail` clusters of the local fleet) with
    `strategy`, the drill approving its own gates, and time every detection and rollback."""
    timings = Timings()
    engine.add_listener(timings)
    for listener in listeners:
        engine.add_listener(listener)
    # Parallel (the default) tolerates exactly the failures asked for, so each of them is
    # rehearsed; a named or serial strategy keeps its own failure policy, as a release would.
    budget = str(len(fail)) if strategy == "parallel" else None
    result = engine.run(ReleaseRequest(tag=tag, strategy=strategy, max_failures=budget,
                                       operator="drill"), approve_own_gates)
    timeout = engine.rollout_timeout
    live = {s.cluster: s.version for s in engine.status()}
    clusters = []
    for outcome in result.clusters:
        cid = outcome.cluster
        role = "fail" if cid in fail else "release"
        start, failed = timings.started.get(cid), timings.failed.get(cid)
        detect = failed - start if start is not None and failed is not None else None
        rolled = timings.rolled.get(cid)
        began = timings.rolling.get(cid)
        rollback = rolled[0] - began if rolled is not None and began is not None else None
        problems = []
        if role == "fail" and failed is None:
            problems.append(f"the drill tag did not fail here ({outcome.outcome.value})"
                            if outcome.outcome is not Outcome.SKIPPED else
                            f"not reached: {outcome.error or 'skipped'}")
        if failed is not None:
            if rolled is None or not rolled[1]:
                problems.append(f"rollback failed: {rolled[2] if rolled else 'not started'}")
            elif rollback is not None and rollback > timeout:
                problems.append(f"rollback took {rollback:.1f}s, over the rollout timeout "
                                f"({timeout:g}s)")
            if detect is not None and detect > timeout:
                problems.append(f"detection took {detect:.1f}s, over the rollout timeout "
                                f"({timeout:g}s)")
            if live.get(cid) != baseline.get(cid):
                problems.append(f"runs {live.get(cid) or 'nothing known'} afterwards, not its "
                                f"baseline {baseline.get(cid)}")
        clusters.append(ClusterDrill(cid, role, baseline.get(cid, PLACEHOLDER),
                                     outcome.outcome.value, detect, rollback, not problems,
                                     "; ".join(problems)))
    return DrillResult(tag, strategy, timeout, tuple(clusters), result.outcome.value,
                       result.message)
