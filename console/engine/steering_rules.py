"""Steering rules the release applies: whether a steering action has something to act on
now (`judge`, the release's `ReleaseControl.judge`), and what the wave runner asks before
it starts a cluster (`left_out`: skipped by an operator through the control channel or
the console's `o`, or removed from the fleet file since the release began) - each
recorded as such, so the wave goes on without it. The channel itself is
`console.engine.steering`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from console.engine.api import FAILURE_OUTCOMES, Outcome
from console.events import Kind
from console.locks import control as wire

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.waves import ReleaseRun

def judge(run: ReleaseRun, action: str, cid: str | None) -> str | None:
    """Why `action` on `cid` has nothing to act on in `run` now (None: it has)."""
    if action in wire.NEEDS_CLUSTER:
        if not cid:
            return f"{action} needs a CLUSTER"
        if cid not in run.plan.order:
            return f"{cid} is not a target of release {run.release_id}"
    if action in wire.NEEDS_CLUSTER and run.closing:
        return "the release's last wave has ended; it is finishing"
    if action in ("approve", "reject") and run.gate_waiting is None:
        return "no gate is waiting for approval"
    if action == "skip":
        with run.lock:
            if cid in run.results:
                return f"{cid} has ended already ({run.results[cid].outcome})"
            if cid in run.started:
                return f"{cid} has started already"
        if run.control.skip_asked(cid or ""):
            return f"{cid} is to be skipped already"
    if action == "retry":
        with run.lock:
            result = run.results.get(cid or "")
        if result is None or result.outcome not in FAILURE_OUTCOMES:
            state = result.outcome if result else "not ended"
            return f"{cid} has not failed ({state})"
    return None


def left_out(engine: Engine, run: ReleaseRun, cid: str) -> bool:
    """Whether `cid`, about to start, is left out - skipped by an operator, or removed
    from the fleet file since the release began - recorded as such; the wave goes on."""
    if skipped_by_operator(engine, run, cid):
        return True
    if cid not in _fleet_ids(engine):
        _left_out(engine, run, cid, "removed from the fleet file during the release",
                  Outcome.SKIPPED)
        return True
    return False


def skipped_by_operator(engine: Engine, run: ReleaseRun, cid: str) -> bool:
    """Record `cid` `skipped_by_operator` if an operator asked so (True), else False."""
    by = run.control.take_skip(cid)
    if by is None:
        return False
    _left_out(engine, run, cid, f"{Outcome.SKIPPED_BY_OPERATOR.value}{_by(by)}",
              Outcome.SKIPPED_BY_OPERATOR)
    return True


def _left_out(engine: Engine, run: ReleaseRun, cid: str, reason: str,
              outcome: Outcome) -> None:
    run.record_skip(cid, reason)
    engine.event(Kind.CLUSTER_SKIPPED, run.release_id, cid, f"skipped: {reason}",
                 reason=reason, outcome=outcome)


_fleet_cache: dict[str, tuple[tuple[int, int], frozenset[str]]] = {}
_fleet_lock = threading.Lock()


def _fleet_ids(engine: Engine) -> frozenset[str]:
    """The cluster ids the fleet file names now: re-read when the file changed (its
    mtime and size; a stat per start); a file that does not load - mid-edit - or is gone
    keeps the ids the release started with."""
    import os
    path = str(getattr(engine.config, "path", "") or "")
    if not path:
        return frozenset(engine.config.ids)
    try:
        info = os.stat(path)
    except OSError:
        return frozenset(engine.config.ids)
    stamp = (info.st_mtime_ns, info.st_size)
    with _fleet_lock:
        seen = _fleet_cache.get(path)
        if seen is not None and seen[0] == stamp:
            return seen[1]
        from console.config import load
        from console.errors import UserError
        try:
            ids = frozenset(load(path).ids)
        except (UserError, OSError):
            # (built only here: a set of every id per cluster started was a thousand
            # thousand steps for a 1,000-cluster wave)
            ids = frozenset(engine.config.ids)
        _fleet_cache[path] = (stamp, ids)
        return ids


def _by(who: str) -> str:
    return f" by {who}" if who else ""
