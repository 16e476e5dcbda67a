"""The wave runner: one release from plan to its RELEASE_FINISHED event.

Plan, pre-flight (nothing is touched unless every check passes), the release lock (a
lease lost mid-release starts no new cluster, exit 3), then wave after wave - clusters of
a wave really at once on a thread pool bounded by `max_parallel` - with the plan's
failure policy (serial stops at the first failure; otherwise a failure budget past which
no new cluster starts), an approval gate before each gated wave (the `Approver` decides:
approve, reject, or abort and optionally roll back), and pause/resume/abort from a
`ReleaseControl`. One wave's clusters are `console.engine.wave_clusters`, one cluster's
rollout `console.engine.deploy`; the state of a running release is
`console.engine.run_state.ReleaseRun`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from console.engine.api import (FAILURE_OUTCOMES, Approver, ClusterResult, ControlChange,
                                GateAnswer,
                                GateDecision, GateRequest, Outcome, ReleaseControl,
                                ReleaseRequest, ReleaseResult, new_release_id)
from console.engine import pinning
from console.engine.checks import (freeze_blocks, freeze_opened, preflight_checks,
                                   preflight_finished, preflight_result, take_lock)
from console.engine import steering, steering_rules
from console.engine.shards import PREFLIGHT, ShardBoard, ShardStop, open_board
from console.engine.bake import bake_wave
from console.engine.bake import seconds_of as bake_seconds
from console.engine.run_state import ReleaseRun, budget_reason
from console.engine.rollbacks import by_suffix, rollback_reached, rollback_scope
from console.engine.wave_clusters import retry_failed, run_wave, skip_rest, warm
from console.events import Event, Kind
from console.freeze import Block
from console.kube.driver import LiveDeployment
from console.locks import ReleaseLock
from console.plan import Plan
from console.preflight import PreflightReport

if TYPE_CHECKING:
    from console.engine.core import Engine

log = logging.getLogger(__name__)

# How a release ends: (outcome, exit code, message).
Ending = tuple[Outcome, int, str]


def run_release(engine: Engine, request: ReleaseRequest, approver: Approver,
                control: ReleaseControl) -> ReleaseResult:
    """Run one release to its end (blocking). Raises `UserError` for bad input."""
    from console.names import validate_tag
    validate_tag(request.tag)
    plan = engine.plan(request)
    release_id = request.release_id or new_release_id()
    app = engine.config.app
    board = open_board(engine, request, release_id)
    # Once, now: every wave runs these bits, whatever happens to the tag meanwhile.
    pin = pinning.resolve(engine.config, request.tag, request.pin)
    engine.event(Kind.RELEASE_PLANNED, release_id, None,
                 f"release {app.name} {request.tag} to {len(plan.targets)} cluster(s), "
                 f"{plan.strategy}" + (f", pinned to {pin.digest}" if pin.digest else ""),
                 app=app.name, version=request.tag,
                 image=app.image_ref(request.tag, pin.digest), digest=pin.digest,
                 strategy=plan.strategy, targets=list(plan.order),
                 waves=plan.to_json()["waves"], operator=request.operator,
                 max_parallel=plan.max_parallel, max_failures=plan.max_failures,
                 **({"shard": board.label} if board else {}))
    blocks = freeze_blocks(engine, plan)
    extra = ("pin", "lock") if pin.check is not None else ("lock",)
    report = preflight_checks(engine, request, release_id, extra=extra, blocks=blocks)
    pinned = pinning.with_pin(report, pin)
    if pinned is not report and pin.check is not None:
        preflight_result(engine, release_id, pin.check)
        report = pinned
    lock = None
    if report.ok:
        # Taken last, so a release that fails its checks never holds anyone up.
        lock, report = take_lock(engine, plan, release_id, request.operator, report)
    preflight_finished(engine, release_id, report)
    shard_stop = None
    if board is not None and report.ok:
        # Nothing is touched anywhere until every shard's pre-flight passed.
        board.try_publish(wave=PREFLIGHT)
        try:
            board.wait_for(PREFLIGHT, "pre-flight", control.aborted_event)
        except ShardStop as exc:
            shard_stop = str(exc)
    if not report.ok or shard_stop:
        if lock is not None:
            for problem in lock.release():
                log.warning("release %s: %s", release_id, problem)
        results = tuple(ClusterResult(c, Outcome.SKIPPED,
                                      report.live.get(c, LiveDeployment(False)).version,
                                      request.tag, error="pre-flight failed")
                        for c in plan.order)
        held = [r.detail for r in report.failures if r.check in ("lock", "freeze", "pin")]
        # (a stop another shard published may say so already: said once)
        why = (f"{shard_stop.removesuffix('; nothing was touched')}; nothing was touched"
               if shard_stop else
               "; ".join(held) if held else "pre-flight failed; nothing was touched")
        return _finish(engine, release_id, Outcome.PREFLIGHT_FAILED, 2, results, report,
                       why, board)
    assert lock is not None
    try:
        result = _run_locked(engine, request, approver, control, plan, release_id, report,
                             lock, blocks, pin.digest, board)
    finally:
        for problem in lock.release():
            log.warning("release %s: %s", release_id, problem)
    return result


def _run_locked(engine: Engine, request: ReleaseRequest, approver: Approver,
                control: ReleaseControl, plan: Plan, release_id: str,
                report: PreflightReport, lock: ReleaseLock,
                blocks: Sequence[Block] = (), digest: str | None = None,
                board: ShardBoard | None = None) -> ReleaseResult:
    """The release once pre-flight passed and every lease is held."""
    data: dict[str, object] = {"version": request.tag, "targets": list(plan.order),
                               "digest": digest}
    if blocks and request.override_freeze:
        # Pre-flight let it through open freeze windows: who, why and which, for the
        # ledger and the notifier.
        # `by` is the name the control lease's cluster (the first target in sorted
        # order) confirms for these credentials (SelfSubjectReview), as for steering;
        # the local operator name, marked unconfirmed, when it cannot say.
        from console.engine.steering_client import whoami
        by, confirmed = whoami(engine, lock.leases[0].cluster if lock.leases
                               else plan.order[0])
        data["freeze_override"] = {"reason": request.override_freeze, "by": by,
                                   "confirmed": confirmed, "operator": request.operator,
                                   "windows": [b.to_json() for b in blocks]}
    if board is not None:
        data["shard"] = board.label
    try:
        engine.emit(Event(Kind.RELEASE_STARTED, release_id,
                          message=f"release {release_id} started", data=data),
                    strict=True)
    except Exception as exc:  # noqa: BLE001 - e.g. the ledger could not record the start
        results = tuple(ClusterResult(c, Outcome.SKIPPED, None, request.tag,
                                      error="release not started") for c in plan.order)
        return _finish(engine, release_id, Outcome.PREFLIGHT_FAILED, 2, results, report,
                       f"could not record the release start: {exc}", board)
    run = ReleaseRun(release_id, request.tag, plan, control, dict(report.live),
                     release_lock=lock, digest=digest, shards=board)
    if board is not None:
        board.run = run
        approver = board.approver(approver)
    told = lock.on_lost

    def on_lost(cid: str, why: str) -> None:
        # Another console holds the cluster now: stop our rollout there at once.
        if told is not None:
            told(cid, why)
        run.interrupt(cid)

    lock.on_lost = on_lost
    engine.register_run(run)
    if engine.config.freeze:
        overridden = [b.occurrence.name for b in blocks] if request.override_freeze else []
        run.freeze_check = lambda: freeze_opened(engine, plan, run.results, overridden)

    def on_control(what: ControlChange, by: str) -> None:
        if what is ControlChange.ABORTED:
            run.interrupt()
        elif what is ControlChange.PAUSED:
            engine.event(Kind.PAUSED, release_id, None, f"paused{by_suffix(by)}", by=by)
        elif what is ControlChange.RESUMED:
            engine.event(Kind.RESUMED, release_id, None, f"resumed{by_suffix(by)}", by=by)

    control.subscribe(on_control)
    control.judge = lambda action, cid: steering_rules.judge(run, action, cid)
    channel = steering.open_channel(engine, run) if control.steerable else None
    try:
        outcome, code, message = _run_waves(engine, run, approver)
    finally:
        if channel is not None:
            channel.close()
        control.judge = None
        control.unsubscribe(on_control)
        engine.register_run(run, running=False)
    ordered = tuple(run.results.get(c) or ClusterResult(c, Outcome.SKIPPED, None, request.tag,
                                                        error="not started")
                    for c in plan.order)
    return _finish(engine, release_id, outcome, code, ordered, report, message, board)


def _finish(engine: Engine, release_id: str, outcome: Outcome, code: int,
            results: tuple[ClusterResult, ...], report: PreflightReport | None,
            message: str, board: ShardBoard | None = None) -> ReleaseResult:
    if board is not None:
        # Before the event: a shard waiting on this one learns it ended at once.
        board.close(outcome, message)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    engine.event(Kind.RELEASE_FINISHED, release_id, None,
                 f"release {outcome.value}: {summary}" + (f" ({message})" if message else ""),
                 outcome=outcome.value, exit_code=code, summary=counts, detail=message)
    return ReleaseResult(release_id, outcome, code, results, report, message)


def _run_waves(engine: Engine, run: ReleaseRun, approver: Approver) -> Ending:
    """Every wave in turn; returns (outcome, exit code, message)."""
    plan = run.plan
    with ThreadPoolExecutor(max_workers=max(1, plan.max_parallel),
                            thread_name_prefix=f"release-{run.release_id}") as pool:
        for wave in plan.waves:
            if run.shards is not None and wave.index > 0:
                # The next wave starts nowhere before every shard finished this one.
                stop = _meet(engine, run, wave.index)
                if stop is not None:
                    return stop
            # A spent failure budget ends the release before anyone is asked at a gate.
            if run.budget_exceeded():
                skip_rest(engine, run, wave.index, budget_reason(run))
                return Outcome.FAILED, 1, budget_reason(run)
            if run.lock_lost():
                return _lock_lost(engine, run, wave.index)
            if run.freeze_reason():
                return _frozen(engine, run, wave.index)
            if wave.gate_before and wave.index > 0:
                stop = _gate(engine, run, approver, wave.index, wave.clusters)
                if stop is not None:
                    skip_rest(engine, run, wave.index, stop[2])
                    return stop
            if run.control.aborted:
                return _aborted(engine, run, wave.index)
            if run.lock_lost():   # the gate may have waited long
                return _lock_lost(engine, run, wave.index)
            if run.freeze_reason():
                return _frozen(engine, run, wave.index)
            engine.event(Kind.WAVE_STARTED, run.release_id, None,
                         f"wave {wave.index + 1} of {len(plan.waves)}: "
                         f"{', '.join(wave.clusters)}",
                         wave=wave.index, clusters=list(wave.clusters))
            warm(pool, min(plan.max_parallel, len(wave.clusters)))
            run_wave(engine, run, pool, wave.index, wave.clusters)
            if wave.index == len(plan.waves) - 1:
                run.closing = True
            retry_failed(engine, run, pool, wave.index)
            # Healthy is not yet good: watch the wave for its bake time first.
            bake_wave(engine, run, wave.index, wave.clusters, wave.bake)
            scoped = rollback_scope(engine, run, wave.index, wave.clusters, skip_rest)
            if scoped is not None:
                return scoped
            wave_results = [run.results[c] for c in wave.clusters if c in run.results]
            engine.event(Kind.WAVE_FINISHED, run.release_id, None,
                         f"wave {wave.index + 1} finished",
                         wave=wave.index,
                         healthy=sum(r.outcome is Outcome.HEALTHY for r in wave_results),
                         failed=sum(r.outcome in FAILURE_OUTCOMES for r in wave_results))
            if run.shards is not None:
                run.shards.try_publish(wave=wave.index)
            if run.control.aborted:
                return _aborted(engine, run, wave.index + 1)
    if run.stopped_by_lost_lock:
        return _lock_lost(engine, run, len(plan.waves))
    if run.failures and run.budget_exceeded():
        return Outcome.FAILED, 1, budget_reason(run)
    if run.failed:
        # This process's own failures: another shard's count against the shared budget
        # only (and may be retried there after this shard read them).
        return Outcome.FAILED, 1, f"{len(run.failed)} cluster(s) failed (within the " \
                                  "failure budget)"
    if run.frozen and any(r.outcome is Outcome.SKIPPED for r in run.results.values()):
        return _frozen(engine, run, len(plan.waves))
    return Outcome.OK, 0, ""


def _meet(engine: Engine, run: ReleaseRun, wave: int) -> Ending | None:
    """Wait at the shard barrier before `wave`; how the release ends when it fails."""
    assert run.shards is not None
    try:
        run.shards.wait_for(wave - 1, f"the gate before wave {wave + 1}",
                            run.control.aborted_event)
    except ShardStop as exc:
        if run.control.aborted:
            return _aborted(engine, run, wave)
        reason = str(exc)
        skip_rest(engine, run, wave, reason)
        return Outcome.STOPPED, 3, reason
    return None


def _frozen(engine: Engine, run: ReleaseRun, from_wave: int) -> Ending:
    """A freeze window opened: start nothing more; the release ends stopped (exit 3)."""
    reason = run.frozen or "a freeze window opened"
    skip_rest(engine, run, from_wave, reason)
    return Outcome.STOPPED, 3, reason


def _lock_lost(engine: Engine, run: ReleaseRun, from_wave: int) -> Ending:
    """Another release may own the clusters now: start nothing more (exit 3)."""
    reason = run.lock_lost() or "release lock lost"
    skip_rest(engine, run, from_wave, reason)
    return Outcome.ABORTED, 3, reason


def _gate(engine: Engine, run: ReleaseRun, approver: Approver, next_wave: int,
          next_clusters: tuple[str, ...]) -> Ending | None:
    """Ask the approver; None to go on, else how the release ends."""
    finished = [run.results[c] for w in run.plan.waves[:next_wave] for c in w.clusters
                if c in run.results]
    # Where this process asks who approves (SelfSubjectReview): a cluster of its own.
    here = tuple(r.cluster for r in finished) or next_clusters
    counts: dict[str, int] = {}
    for r in finished:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    also = ""
    if run.shards is not None:
        # The gate is the whole release's: every shard's results, the whole next wave.
        finished, next_clusters, counts = run.shards.gate_view(next_wave, finished)
        also = " (every shard's waves so far: " + \
            ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) + ")"
    strategy = engine.config.strategies.get(run.plan.strategy)
    request = GateRequest(run.release_id, next_wave - 1, tuple(finished),
                          next_clusters, approvals=strategy.approvals if strategy else 1,
                          baked=bake_seconds(engine, run.plan.waves[next_wave - 1].bake),
                          here=here)
    run.gate_finished = counts
    engine.event(Kind.GATE_WAITING, run.release_id, None,
                 f"waiting for approval to start wave {next_wave + 1}: "
                 f"{', '.join(next_clusters)}{also}", wave=next_wave,
                 clusters=list(next_clusters), finished=counts)
    # A stop that came before (another shard's, while the board was read) rejects.
    stopped = run.open_gate(next_wave)
    try:
        answer = GateAnswer(GateDecision.REJECT, by=stopped) if stopped else approver(request)
    except Exception as exc:  # noqa: BLE001 - an approver that fails stops, it never approves
        answer = GateAnswer(GateDecision.REJECT, by=f"approver error: {exc}")
    finally:
        run.gate_waiting = None
        # Answers given for this gate and not taken (a second approval in the same poll
        # round) are stale now: they must not pass the next gate.
        run.control.close_gate(next_wave)
    decision = GateDecision(answer.decision)
    engine.event(Kind.GATE_DECIDED, run.release_id, None,
                 f"gate {decision.value}{by_suffix(answer.by)}", decision=decision.value,
                 by=answer.by, rollback=answer.rollback, wave=next_wave)
    if decision is GateDecision.APPROVE:
        return None
    if decision is GateDecision.REJECT:
        return Outcome.STOPPED, 3, f"stopped at the gate before wave {next_wave + 1}" \
                                   f"{by_suffix(answer.by)}"
    if answer.rollback:
        rollback_reached(engine, run, "aborted at the gate")
    return Outcome.ABORTED, 3, \
        f"aborted at the gate before wave {next_wave + 1}{by_suffix(answer.by)}" \
        + ("; reached clusters rolled back" if answer.rollback else "")


def _aborted(engine: Engine, run: ReleaseRun, from_wave: int) -> Ending:
    skip_rest(engine, run, from_wave, "release aborted")
    if run.control.rollback_on_abort:
        rollback_reached(engine, run, "release aborted")
        return Outcome.ABORTED, 3, "aborted; reached clusters rolled back"
    return Outcome.ABORTED, 3, "aborted"
