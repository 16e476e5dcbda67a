"""One wave's clusters in a release (`console.engine.waves` runs the waves): started
really at once on the release's thread pool as slots free up (bounded by
`max_parallel`, paced), no new start once the budget is spent, the release paused or
aborted, its lock lost or a freeze window open (the rest skipped with the reason);
failed clusters an operator asked to retry deployed again once the rest of the wave
ended. One cluster's rollout is `console.engine.deploy`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from console.engine import steering_rules
from console.engine.api import FAILURE_OUTCOMES, ClusterResult, Outcome
from console.engine.deploy import hand_out
from console.engine.pacing import tell_paced
from console.engine.rollbacks import by_suffix
from console.engine.run_state import budget_reason
from console.events import Kind
from console.kube.waking import take_batch

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.run_state import ReleaseRun

log = logging.getLogger(__name__)

CONTROL_POLL = 0.2        # s between looks at the pause/abort state while clusters run


def warm(pool: ThreadPoolExecutor, workers: int) -> None:
    """Have `workers` threads of `pool` running before the wave hands them clusters.

    The pool starts a thread per submit when none is idle, and `Thread.start` waits for
    the new thread to run: among a wave's rollouts already running, each start waited
    for the GIL, and the last cluster of a 1,000-cluster wave started 11-14 s after the
    first (the release's wall time waits for it). Started here, before any of them, a
    thousand threads take a fraction of a second.
    """
    started = threading.Event()
    # Each task holds its thread until all are submitted, so every submit that finds no
    # idle thread starts one.
    warming = [pool.submit(started.wait) for _ in range(workers)]
    started.set()
    for future in warming:
        future.result()


def run_wave(engine: Engine, run: ReleaseRun, pool: ThreadPoolExecutor, wave: int,
              clusters: Sequence[str]) -> None:
    """Start the wave's clusters as slots free up; stop starting on budget, pause, abort.

    Finished rollouts come back through a queue their futures put themselves on: waiting
    on a thousand futures at once (`concurrent.futures.wait`) installs and removes a
    waiter on each of them every poll, which cost more CPU than the rollouts' decisions.
    """
    pending = deque(clusters)
    running: dict[Future, str] = {}
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    cancel = run.control.aborted_event
    while pending or running:
        stop_reason = None
        lock_lost = run.lock_lost()
        if run.control.aborted:
            stop_reason = "release aborted"
        elif lock_lost:
            stop_reason = lock_lost
            if pending:
                run.stopped_by_lost_lock = True
        elif run.budget_exceeded():
            stop_reason = budget_reason(run)
        elif pending and run.freeze_reason():
            stop_reason = run.frozen
        if stop_reason:
            while pending:
                skip(engine, run, pending.popleft(), stop_reason)
        elif not run.control.paused:
            while pending and len(running) < run.plan.max_parallel:
                delay = run.pacer.delay()
                if delay > 0:
                    # Pacing: the next clusters wait for a start slot (told once each).
                    tell_paced(engine, run, wave,
                               list(pending)[:run.plan.max_parallel - len(running)], delay)
                    break
                cid = pending.popleft()
                if steering_rules.left_out(engine, run, cid):
                    continue
                with run.lock:
                    taken_by = run.handed_over.get(cid)
                    if taken_by is None:
                        run.started.add(cid)
                if taken_by is not None:
                    skip(engine, run, cid, f"taken over by {taken_by} during the release "
                                            "(manual rollback)")
                    continue
                run.pacer.reserve(cid)
                future = hand_out(pool, engine, run, cid, wave)
                running[future] = cid
                future.add_done_callback(finished.put)
        elif pending:
            run.control.hold()
        if not running:
            if pending:  # paused with nothing running: wait for resume or abort
                cancel.wait(CONTROL_POLL)
            continue
        done = take_batch(finished, CONTROL_POLL)
        if not done:
            continue
        for future in done:
            cid = running.pop(future)
            run.pacer.release(cid)      # a start reserved but never begun counts no more
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a bug in one cluster's worker
                log.exception("deploying %s failed unexpectedly", cid)
                result = ClusterResult(cid, Outcome.FAILED, None, run.tag,
                                       error=f"internal error: {exc}")
            with run.lock:
                run.results[cid] = result
                if result.outcome in FAILURE_OUTCOMES:
                    run.count_failure(cid)   # a no-op when the worker counted it already
                run.settled.notify_all()


def retry_failed(engine: Engine, run: ReleaseRun, pool: ThreadPoolExecutor,
                  wave: int) -> None:
    """Deploy again the failed clusters an operator asked to retry, once the rest of
    the wave ended; their failures no longer count against the budget."""
    while not run.control.aborted and not run.lock_lost():
        asked = run.control.take_retries()
        again = [cid for cid in run.plan.order if cid in asked
                 and cid in run.results and run.results[cid].outcome in FAILURE_OUTCOMES]
        if not again:
            return
        with run.lock:
            for cid in again:
                run.failed.discard(cid)
                del run.results[cid]
                run.started.discard(cid)
                # A new start: paced like any other, and told again when held.
                run.paced.discard(cid)
        for cid in again:
            engine.event(Kind.STEERED, run.release_id, cid,
                         f"retrying {cid}{by_suffix(asked[cid])}", action="retry",
                         by=asked[cid])
        run_wave(engine, run, pool, wave, again)


def skip(engine: Engine, run: ReleaseRun, cid: str, reason: str) -> None:
    if steering_rules.skipped_by_operator(engine, run, cid):
        return   # the operator's skip came first: recorded as theirs
    run.record_skip(cid, reason)
    engine.event(Kind.CLUSTER_SKIPPED, run.release_id, cid, f"skipped: {reason}",
                 reason=reason)


def skip_rest(engine: Engine, run: ReleaseRun, from_wave: int, reason: str) -> None:
    for wave in run.plan.waves[from_wave:]:
        for cid in wave.clusters:
            if cid not in run.results:
                skip(engine, run, cid, reason)


__all__ = ["retry_failed", "run_wave", "skip", "skip_rest", "warm"]
