"""Where a manual rollback of one cluster goes, and why - decided from the ledger.

`kubectl rollout undo` goes to the previous revision, which can move a cluster *forward*:
v1.5 running, v1.6 aborted at a gate (rolled back to v1.5, a new revision), and undo
goes to v1.6. So `rollback CLUSTER` and the console's `r` go, by default, to the version
the cluster ran, healthy, before its current version arrived, as the ledger records it -
never one that failed, was rolled back or was interrupted there since it was last healthy
there. With no ledger record for the cluster, or when it runs something the ledger did not
put there (drift), nothing is chosen: the operator names a version. `last-good` is the
newest version recorded healthy there that is not the current one; `undo` is kubectl's
meaning (the previous revision), asked for explicitly.

The choice is pure over the ledger's records (`console.history.Release`, oldest first,
as `Ledger.releases(cluster=...)` returns them) and the live version; `plan_rollback`
reads the live state through the cluster's driver. Nothing here writes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.errors import UserError, ValidationError
from console.events import Outcome
from console.kube.client import ClusterError

if TYPE_CHECKING:
    from console.engine.core import Engine

LAST_GOOD = "last-good"   # `--to last-good`
UNDO = "undo"             # `--undo`: kubectl's previous revision

# Cluster outcomes after which the release's version must not be a default target again
# (until it is recorded healthy there later).
_NOT_KEPT = frozenset({Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.INTERRUPTED})


@dataclass(frozen=True)
class RollbackPlan:
    """What a manual rollback of `cluster` would do: from which version to which, and why
    (for the confirmation). `to_version` None with `how == UNDO`: kubectl's choice, named
    in `why` when a revision says which version it runs."""

    cluster: str
    from_version: str | None
    to_version: str | None
    how: str          # "ledger" | LAST_GOOD | UNDO | "named"
    why: str
    # The digest the ledger recorded for `to_version` there (a pinned release): the
    # rollback goes back to those bits, never to whatever the tag names now.
    digest: str | None = None

    def question(self) -> str:
        """`roll back prod-eu from v1.6 to v1.5 (why)` - both versions named."""
        return (f"roll back {self.cluster} from {self.from_version or '?'} to "
                f"{self.to_version or '?'} ({self.why})")


@dataclass(frozen=True)
class _Record:
    """One cluster outcome of the ledger with what it means for a rollback."""

    release: str
    kind: str               # "release" or "rollback" (a manual action)
    outcome: str
    version: str | None     # what ran there afterwards (None: unknown)
    good: bool              # `version` was seen healthy
    from_version: str | None
    to_version: str | None


def _records(cluster: str, releases: Sequence[Any]) -> list[_Record]:
    return [_Record(r.id, r.kind, c.outcome, c.version, c.good, c.from_version,
                    c.to_version)
            for r in releases for c in r.clusters if c.cluster == cluster]


def _kept(records: Sequence[_Record]) -> set[str]:
    """Versions whose last healthy record there is newer than their last failure, rollback
    or interruption there (a version later released again, healthy, is fine again)."""
    healthy: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for i, rec in enumerate(records):
        if rec.good and rec.version:
            healthy[rec.version] = i
        if rec.kind == "release" and rec.outcome in _NOT_KEPT and rec.to_version:
            dropped[rec.to_version] = i          # the release's version did not stay
        if rec.kind == "rollback" and rec.from_version:
            dropped[rec.from_version] = i        # someone rolled back away from it
        if rec.kind == "rollback" and rec.outcome != Outcome.HEALTHY and rec.to_version:
            dropped[rec.to_version] = i          # a rollback to it failed
    return {v for v, i in healthy.items() if i > dropped.get(v, -1)}


def default_target(cluster: str, live: str | None, releases: Sequence[Any],
                   where: str = "the release ledger") -> tuple[str, str]:
    """(version, why) of the default rollback: the version `cluster` ran, healthy, before
    `live` arrived. `ValidationError` (exit 2) without a ledger record, on drift, or when
    there is no such version."""
    ask = "name the version with --to V (or --to last-good, or --undo for kubectl's)"
    records = [r for r in _records(cluster, releases) if r.version is not None]
    if not records:
        raise ValidationError(f"cluster {cluster!r}: {where} has no record of what runs "
                              f"there, so no version to go back to is known; {ask}")
    recorded = records[-1].version
    if live != recorded:
        raise ValidationError(f"cluster {cluster!r} runs {live or 'nothing'}, but {where} "
                              f"last recorded {recorded} there (changed outside "
                              f"release-console); {ask}")
    # The records since the current version arrived, then what ran before it.
    start = len(records)
    while start > 0 and records[start - 1].version == live:
        start -= 1
    kept = _kept(_records(cluster, releases))
    for rec in reversed(records[:start]):
        if rec.version != live and rec.good and rec.version in kept:
            return rec.version, (f"the version it ran, healthy, before {live} arrived; "
                                 f"recorded by {rec.release}")
    raise ValidationError(f"cluster {cluster!r}: {where} records no version that ran "
                          f"there, healthy, before {live} and was not failed or rolled "
                          f"back there since; {ask}")


def last_good_target(cluster: str, live: str | None, releases: Sequence[Any],
                     where: str = "the release ledger") -> tuple[str, str]:
    """(version, why) of `--to last-good`: the newest version recorded healthy on `cluster`
    that is not `live`. `ValidationError` when there is none."""
    for rec in reversed(_records(cluster, releases)):
        if rec.good and rec.version and rec.version != live:
            return rec.version, f"its last good version; recorded by {rec.release}"
    raise ValidationError(f"--to last-good: no known-good version other than "
                          f"{live or 'nothing'} recorded for cluster {cluster!r} in {where}; "
                          "name a version with --to V")


def recorded_digest(cluster: str, version: str | None, releases: Sequence[Any]) -> str | None:
    """The digest the ledger last recorded for `version` on `cluster` (else the digest of
    the newest release of that version), or None when no pinned release recorded it."""
    if version is None:
        return None
    for release in reversed(releases):
        for outcome in release.clusters:
            if outcome.cluster == cluster and outcome.version == version and \
                    getattr(outcome, "digest", None):
                return outcome.digest
    for release in reversed(releases):
        if release.version == version and getattr(release, "digest", None):
            return release.digest
    return None


def plan_rollback(engine: Engine, cluster_id: str, to: str | None,
                  releases: Sequence[Any], where: str = "the release ledger") -> RollbackPlan:
    """What `rollback cluster_id [--to to]` would do, read live; touches nothing.

    `to`: None (the ledger's default), `LAST_GOOD`, `UNDO`, or a version. `releases`:
    the ledger's releases of that cluster, oldest first. Raises `UserError` (exit 2)
    when the cluster cannot be read or the choice is refused.
    """
    from console.engine.rollbacks import rollback_target
    from console.kube.driver import Revision
    from console.names import validate_tag
    cluster = engine.config.cluster(cluster_id)
    if to not in (None, LAST_GOOD, UNDO):
        validate_tag(to, "--to")
    try:
        driver = engine.driver(cluster.id)
        live = driver.live(timeout=engine.status_timeout)
        if not live.exists:
            raise ValidationError(f"cluster {cluster.id!r}: {engine.config.app.name} is not "
                                  f"deployed in namespace {cluster.namespace}")
        if to == UNDO:
            target = rollback_target(cluster.id, live, driver.revisions(live), None)
            version = target.version if isinstance(target, Revision) else target
            return RollbackPlan(cluster.id, live.version, version, UNDO,
                                "the previous revision, as kubectl rollout undo")
    except ClusterError as exc:
        raise UserError(f"cluster {cluster.id!r} could not be read: {exc.reason}; "
                        "nothing done") from None
    if to is None:
        version, why = default_target(cluster.id, live.version, releases, where)
        return RollbackPlan(cluster.id, live.version, version, "ledger", why,
                            recorded_digest(cluster.id, version, releases))
    if to == LAST_GOOD:
        version, why = last_good_target(cluster.id, live.version, releases, where)
        return RollbackPlan(cluster.id, live.version, version, LAST_GOOD, why,
                            recorded_digest(cluster.id, version, releases))
    if to == live.version and not live.helm_pending:
        raise ValidationError(f"cluster {cluster.id!r}: already runs {to}")
    return RollbackPlan(cluster.id, live.version, to, "named", "named with --to",
                        recorded_digest(cluster.id, to, releases))
