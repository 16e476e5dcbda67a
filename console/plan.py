"""Pure planning: which clusters a release targets and in which waves they roll out.

`select(config, selector)` turns a selector (`prod-*,!prod-us`, as the original
pipeline's TARGET_CLUSTERS) into clusters; `build_plan(...)` turns targets and a
strategy (`serial`, `parallel` or a named strategy of `clusters.yaml`) into a `Plan`:
waves in order, the gate before each wave, the concurrency bound and the failure
policy. No I/O here: everything is a function of the loaded configuration.

Wave indexes are 0-based (`Wave.index`, `Plan.wave_of`); display them as `index + 1`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from console.config import (BUILTIN_STRATEGIES, REST, Cluster, FleetConfig,
                            did_you_mean, failure_budget_count, is_glob, parse_failure_budget,
                            parse_pace)
from console.errors import ValidationError
from console.names import show

DEFAULT_MAX_PARALLEL = 10
ROLLBACK_SCOPES = ("cluster", "wave", "release")   # `on_failure`


@dataclass(frozen=True)
class Wave:
    """One wave: clusters started together (bounded by `max_parallel`), in this order."""

    index: int  # 0-based
    clusters: tuple[str, ...]
    gate_before: bool  # an approval is needed before this wave starts
    # Seconds the wave is watched once healthy before the next wave (or its gate, or
    # the end of the release) - a cluster that degrades meanwhile fails. 0: no bake.
    bake: float = 0.0


@dataclass(frozen=True)
class PlanRow:
    """One line of a printed plan: a cluster, its wave and its place in the order."""

    cluster: str
    wave: int  # 0-based wave index
    position: int  # 1-based position in the whole release
    gate_before: bool  # the cluster opens a wave that waits for approval


@dataclass(frozen=True)
class Plan:
    """What a release will do, before it does it.

    Failure policy: with `stop_on_first_failure` (serial) the first failed cluster ends
    the release. Otherwise up to `max_failures` clusters may fail; once more have
    failed, no new cluster starts (those already running finish). Either way, every
    cluster that was not started is recorded as skipped.
    """

    strategy: str
    waves: tuple[Wave, ...]
    max_parallel: int
    max_failures: int  # failures tolerated; one more stops new starts
    stop_on_first_failure: bool
    targets: tuple[str, ...]  # cluster ids, config order
    failure_budget: str | None = None  # as given ("2", "10%"); max_failures is its count
    # Pacing (`max_starts`, `--pace`): at most N clusters start in any window of S seconds.
    max_starts: tuple[int, float] | None = None
    # What a failure rolls back: the failed cluster (default), every cluster of its
    # wave, or every cluster the release reached (and then the release ends).
    on_failure: str = "cluster"
    # (K, N) when this is the K-th of N slices of a release (`shard_plan`); its waves
    # may be empty, even all of them.
    shard: tuple[int, int] | None = None

    @property
    def order(self) -> tuple[str, ...]:
        """Every target in the order it starts (wave by wave)."""
        return tuple(c for wave in self.waves for c in wave.clusters)

    def wave_of(self, cluster_id: str) -> int:
        """The 0-based wave index of a target; `KeyError` for a non-target."""
        for wave in self.waves:
            if cluster_id in wave.clusters:
                return wave.index
        raise KeyError(cluster_id)

    def rows(self) -> tuple[PlanRow, ...]:
        """One row per target, in start order (the printer adds live/new versions)."""
        out: list[PlanRow] = []
        for wave in self.waves:
            for i, cid in enumerate(wave.clusters):
                out.append(PlanRow(cluster=cid, wave=wave.index, position=len(out) + 1,
                                   gate_before=wave.gate_before and i == 0))
        return tuple(out)

    def policy(self) -> str:
        """The failure policy in one sentence, for the printed plan."""
        if self.stop_on_first_failure:
            text = "stops at the first failure"
        elif self.max_failures == 0:
            text = "no new cluster starts after a failure"
        else:
            budget = f" ({self.failure_budget})" if self.failure_budget and \
                self.failure_budget.endswith("%") else ""
            text = (f"tolerates {self.max_failures} failure"
                    f"{'s' if self.max_failures != 1 else ''}{budget}; "
                    "no new cluster starts after that")
        undo = {"cluster": "failed clusters are rolled back",
                "wave": "a failure rolls back its whole wave",
                "release": "a failure rolls back every cluster the release reached and "
                           "ends it"}[self.on_failure]
        return f"{text}; {undo}; clusters not started are skipped"

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-able data (the `waves` of a RELEASE_PLANNED event)."""
        return {
            "strategy": self.strategy, "targets": list(self.targets),
            "waves": [{"index": w.index, "clusters": list(w.clusters),
                       "gate_before": w.gate_before, "bake": w.bake} for w in self.waves],
            "max_parallel": self.max_parallel, "max_failures": self.max_failures,
            "failure_budget": self.failure_budget,
            "stop_on_first_failure": self.stop_on_first_failure,
            "max_starts": list(self.max_starts) if self.max_starts else None,
            "on_failure": self.on_failure,
        }

    def describe(self, live: Mapping[str, str | None] | None = None,
                 new: str | None = None) -> str:
        """A plain-text table of the plan; `live` maps cluster -> running version."""
        header = ["#", "CLUSTER", "WAVE"]
        if live is not None:
            header.append("LIVE")
        if new is not None:
            header.append("NEW")
        table = [header]
        for row in self.rows():
            bake = self.waves[row.wave].bake
            line = [str(row.position), row.cluster,
                    f"{row.wave + 1}{' (gate)' if row.gate_before else ''}"
                    f"{f' (bake {bake:g}s)' if bake and row.cluster == self.waves[row.wave].clusters[-1] else ''}"]
            if live is not None:
                line.append(live.get(row.cluster) or "-")
            if new is not None:
                line.append(new)
            table.append(line)
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                 for r in table]
        summary = (f"strategy {self.strategy}: {len(self.targets)} cluster"
                   f"{'s' if len(self.targets) != 1 else ''} in {len(self.waves)} wave"
                   f"{'s' if len(self.waves) != 1 else ''}, at most {self.max_parallel} "
                   f"at once" + (f", at most {self.max_starts[0]} start(s) in any "
                                 f"{self.max_starts[1]:g}s" if self.max_starts else "")
                   + f"; {self.policy()}")
        return "\n".join([summary, *lines])


# --------------------------------------------------------------------------- selection


def _matches(config: FleetConfig, term: str) -> list[Cluster]:
    """Clusters a term names: an id, a group, or a glob over ids (config order)."""
    if is_glob(term):
        return [c for c in config.clusters if fnmatch.fnmatchcase(c.id, term)]
    return [c for c in config.clusters if c.id == term or term in c.groups]


def select(config: FleetConfig, selector: str) -> tuple[Cluster, ...]:
    """The clusters a selector names, in config order.

    A selector is a comma list of terms: a cluster id, a group, a glob over ids
    (`prod-*`), or `!term` to exclude. Without inclusion terms it starts from every
    cluster; `""` is all. A term that names no cluster is a `ValidationError` naming it,
    as is a selector whose result is empty.
    """
    terms = [t.strip() for t in (selector or "").split(",") if t.strip()]
    included: set[str] | None = None
    excluded: set[str] = set()
    for term in terms:
        negate = term.startswith("!")
        name = term[1:].strip() if negate else term
        if not name:
            raise ValidationError(f"--clusters: {show(term)}: '!' must be followed by a "
                                  "cluster id, group or glob")
        found = _matches(config, name)
        if not found:
            raise ValidationError(
                f"--clusters: {show(name)} matches no cluster id, group or glob"
                + did_you_mean(name, [*config.ids, *config.groups]))
        if negate:
            excluded.update(c.id for c in found)
        else:
            included = (included or set()) | {c.id for c in found}
    chosen = tuple(c for c in config.clusters
                   if (included is None or c.id in included) and c.id not in excluded)
    if not chosen:
        raise ValidationError(f"--clusters: {show(selector)} selects no cluster")
    return chosen


# --------------------------------------------------------------------------- plans


def _target_ids(config: FleetConfig, targets: Sequence[Cluster | str]) -> tuple[str, ...]:
    wanted: set[str] = set()
    for t in targets:
        cid = t.id if isinstance(t, Cluster) else t
        config.cluster(cid)  # raises for an unknown id
        wanted.add(cid)
    if not wanted:
        raise ValidationError("no target clusters")
    return tuple(cid for cid in config.ids if cid in wanted)


def _parse_order(order: Sequence[str] | str) -> tuple[str, ...]:
    items = order.split(",") if isinstance(order, str) else list(order)
    return tuple(i.strip() for i in items if i.strip())


def _max_parallel(value: int | None, default: int | None) -> int:
    chosen = value if value is not None else default
    if chosen is None:
        return DEFAULT_MAX_PARALLEL
    if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 1:
        raise ValidationError(f"--max-parallel: expected a whole number >= 1, got {show(chosen)}")
    return chosen


def _budget(value: str | int | None, default: str | None) -> str | None:
    if value is None:
        return default
    try:
        return parse_failure_budget(value)
    except ValueError:
        raise ValidationError(f"--max-failures: expected a number of clusters or a "
                              f"percentage (0-100%), got {show(value)}") from None


def build_plan(config: FleetConfig, targets: Sequence[Cluster | str], strategy: str = "serial",
               order: Sequence[str] | str = (), max_parallel: int | None = None,
               max_failures: str | int | None = None, bake: float | None = None,
               pace: str | None = None, on_failure: str | None = None) -> Plan:
    """The plan for releasing to `targets` with `strategy`; `ValidationError` if unsound.

    serial: one cluster at a time in `order` (every cluster of it must be a target;
    targets not in it follow in config order), else the config's `order` filtered to
    the targets, else config order; stops at the first failure.
    parallel: one wave, at most `max_parallel` at once (default 10), failure budget
    `max_failures` (a number or a %, default 0).
    A named strategy: its waves resolved against the targets (see `resolve_waves`),
    gates between waves when it says `gates: true`.
    `bake` (seconds, `deploy --bake`) overrides every wave's bake time; else a wave
    bakes as its strategy says (per wave, else `bake:`), the built-ins not at all.
    `pace` (`N/DURATION`, `deploy --pace`) overrides the strategy's `max_starts`;
    `on_failure` (cluster | wave | release, `deploy --on-failure`) its rollback scope.
    """
    if on_failure is not None and on_failure not in ROLLBACK_SCOPES:
        raise ValidationError(f"--on-failure: one of {', '.join(ROLLBACK_SCOPES)}, got "
                              f"{show(on_failure)}")
    if bake is not None and not 0 <= bake <= 24 * 3600:
        raise ValidationError(f"--bake: a bake time is 0 to 24h, got {bake:g}s")
    max_starts = None
    if pace is not None:
        try:
            max_starts = parse_pace(pace)
        except ValueError:
            raise ValidationError(f"--pace: expected N/DURATION such as 10/30s (at most N "
                                  f"clusters start in any DURATION), got {show(pace)}") from None
    ids = _target_ids(config, targets)
    order_ids = _parse_order(order)
    if strategy == "serial":
        if max_parallel is not None and max_parallel != 1:
            raise ValidationError("--max-parallel: the serial strategy runs one cluster at "
                                  "a time; use --strategy parallel")
        if max_failures is not None:
            raise ValidationError("--max-failures: the serial strategy stops at the first "
                                  "failure; use --strategy parallel or a named strategy")
        sequence = _serial_order(config, ids, order_ids)
        return Plan(strategy="serial", waves=(Wave(0, sequence, False, bake or 0.0),),
                    max_parallel=1,
                    max_failures=0, stop_on_first_failure=True, targets=ids,
                    max_starts=max_starts, on_failure=on_failure or "cluster")
    if order_ids:
        raise ValidationError(f"--order: applies to the serial strategy only, not "
                              f"{show(strategy)}")
    if strategy == "parallel":
        budget = _budget(max_failures, None)
        return Plan(strategy="parallel", waves=(Wave(0, ids, False, bake or 0.0),),
                    max_parallel=_max_parallel(max_parallel, None),
                    max_failures=failure_budget_count(budget, len(ids)),
                    stop_on_first_failure=False, targets=ids, failure_budget=budget,
                    max_starts=max_starts, on_failure=on_failure or "cluster")
    named = config.strategies.get(strategy)
    if named is None:
        choices = [*BUILTIN_STRATEGIES, *config.strategies]
        raise ValidationError(f"--strategy: unknown strategy {show(strategy)}"
                              + did_you_mean(strategy, choices)
                              + f"; one of {', '.join(choices)}")
    budget = _budget(max_failures, named.max_failures)
    placed = _resolve(config, named.waves, ids)

    def bake_of(source: int | None) -> float:
        if bake is not None:
            return bake
        own = named.wave_bakes[source] if source is not None and \
            source < len(named.wave_bakes) else None
        return named.bake if own is None else own

    return Plan(strategy=named.name,
                waves=tuple(Wave(i, w, named.gates and i > 0, bake_of(source))
                            for i, (source, w) in enumerate(placed)),
                max_parallel=_max_parallel(max_parallel, named.max_parallel),
                max_failures=failure_budget_count(budget, len(ids)),
                stop_on_first_failure=False, targets=ids, failure_budget=budget,
                max_starts=max_starts or named.max_starts,
                on_failure=on_failure or named.on_failure)


def _serial_order(config: FleetConfig, ids: tuple[str, ...],
                  order: tuple[str, ...]) -> tuple[str, ...]:
    if order:
        seen: set[str] = set()
        for cid in order:
            if cid not in config.ids:
                raise ValidationError(f"--order: unknown cluster {show(cid)}"
                                      + did_you_mean(cid, config.ids))
            if cid not in ids:
                raise ValidationError(f"--order: cluster {cid!r} is not a target of this "
                                      "release (add it to --clusters or remove it from "
                                      "--order)")
            if cid in seen:
                raise ValidationError(f"--order: cluster {cid!r} is listed twice")
            seen.add(cid)
        head = order
    else:
        # The config's default order is a preference, never an error: filter it.
        head = tuple(cid for cid in config.order if cid in ids)
    return head + tuple(cid for cid in ids if cid not in head)


def resolve_waves(config: FleetConfig, waves: Sequence[Sequence[str]],
                  ids: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Strategy waves turned into waves of target ids.

    Entries are taken in order, each from the targets not yet placed: an id, a group or
    a glob (its clusters in config order), `N%` (the first N% of the remaining targets,
    rounded up), `rest` (all remaining). Non-targets are dropped, empty waves dropped,
    and targets no wave names form one last wave.
    """
    return tuple(w for _, w in _resolve(config, waves, ids))


def _resolve(config: FleetConfig, waves: Sequence[Sequence[str]],
             ids: tuple[str, ...]) -> list[tuple[int | None, tuple[str, ...]]]:
    """`resolve_waves`, each wave with the index of the strategy wave it came from (None:
    the last wave of targets no wave names)."""
    remaining = list(ids)
    out: list[tuple[int | None, tuple[str, ...]]] = []
    for index, wave in enumerate(waves):
        taken: list[str] = []
        for entry in wave:
            if entry == REST:
                picked = list(remaining)
            elif entry.endswith("%"):
                share = Fraction(entry[:-1])
                picked = remaining[: math.ceil(share * len(remaining) / 100)]
            else:
                names = {c.id for c in _matches(config, entry)}
                picked = [cid for cid in remaining if cid in names]
            taken.extend(picked)
            placed = set(picked)
            remaining = [cid for cid in remaining if cid not in placed]
        if taken:
            out.append((index, tuple(taken)))
    if remaining:
        out.append((None, tuple(remaining)))
    return out


# --------------------------------------------------------------------------- shards

def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` (`deploy --shard 2/3`) as (K, N), 1 <= K <= N; raises ValidationError."""
    parts = str(text).strip().split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise ValidationError(f"--shard: expected K/N such as 2/3, got {text!r}") from None
    if not 1 <= k <= n or n > 1000:
        raise ValidationError(f"--shard {text}: K must be between 1 and N, N at most 1000")
    return k, n


def shard_of(cluster_id: str, shards: int) -> int:
    """The 1-based shard that releases `cluster_id` when a release runs as `shards`
    shards: sha256 of the id modulo N. Stable: the same cluster always lands in the same
    shard for the same N, whatever the fleet file's order or the other clusters (not
    Python's `hash`, which changes per process)."""
    import hashlib
    digest = hashlib.sha256(cluster_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


def shard_plan(plan: Plan, shard: int, shards: int) -> Plan:
    """The K-th of N slices of `plan`: every wave keeps its index, gate and bake (a wave
    may be empty in a slice, and still counts: shards meet at every wave), the failure
    budget stays the whole release's (`max_failures` is counted over all shards)."""
    from dataclasses import replace
    waves = tuple(replace(w, clusters=tuple(c for c in w.clusters
                                            if shard_of(c, shards) == shard))
                  for w in plan.waves)
    return replace(plan, waves=waves, shard=(shard, shards),
                   targets=tuple(c for c in plan.targets if shard_of(c, shards) == shard))
