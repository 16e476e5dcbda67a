"""A shard board is taken off its Lease by the last shard to end, and a stop written
after that - the stop a shard writes as it ends (`close`), or a split's stop on another
board, racing the last shard's cleanup - does not bring the board back with nobody left
to take it off. Real `ShardBoard`s against the simulator over HTTP, their steps
interleaved as the race interleaved them in a clean-clone CI run."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from console.engine.api import Outcome, ReleaseRequest
from console.engine.shards import PREFLIGHT, ShardBoard, ShardStop
from console.kube.client import MAX_ATTEMPTS, MAX_RETRY_AFTER
from console.locks import control
from console.locks import shards as wire
from console.plan import Plan
from tests.waiting import wait_for

IDS = ["c0", "c1"]
RID = "r-cleanup"


def boards_on(board: ShardBoard) -> dict:
    return wire.boards(control.read(board.kube, board.namespace, board.name, 10))


def version_of(board: ShardBoard) -> str:
    lease = control.read(board.kube, board.namespace, board.name, 10)
    return lease["metadata"]["resourceVersion"]


def two_shards_on_c0(world: Any, seed: int) -> tuple[ShardBoard, ShardBoard]:
    """Shards 1 and 2 of 2 of release RID on board c0 (of c0, c1), both reported."""
    engine = world(IDS, readiness_delay=0.2, jitter=0.0, seed=seed).engine()
    engine.driver("c0").ensure_namespace()
    one, two = (ShardBoard(engine, RID, k, 2, "c0", 8) for k in (1, 2))
    one.publish()
    two.publish()
    return one, two


def split_world(world: Any, seed: int) -> tuple[Any, Any, Plan]:
    """A c0..c3 world (c0 the default board; namespaces on c0 and c2, the board given
    with --shard-board c2), its engine and the whole release's plan."""
    w = world(["c0", "c1", "c2", "c3"], readiness_delay=0.2, jitter=0.0, seed=seed)
    engine = w.engine()
    for c in ("c0", "c2"):
        engine.driver(c).ensure_namespace()
    return w, engine, engine.plan(ReleaseRequest(tag="v2"))


def test_a_stop_written_after_the_last_shard_cleaned_up_leaves_no_board(world):
    one, two = two_shards_on_c0(world, seed=3)
    why = "shard 2/2 ended preflight_failed: the split"
    # Both ended; shard 1 cleans up first and, every shard having ended, takes the
    # release off. Shard 2's stop - written in its `close` between its end and its
    # cleanup - comes after that.
    one.try_publish(ended=Outcome.PREFLIGHT_FAILED.value, why="split")
    two.try_publish(ended=Outcome.PREFLIGHT_FAILED.value, why="split")
    one.clean_boards()
    assert RID not in boards_on(one)
    version = version_of(one)
    two.stop_all(why)
    two.clean_boards()
    # Before: {'r-cleanup': {'stop': {'by': 2, 'why': ...}}} stayed until 8 newer
    # releases pushed it off.
    assert RID not in boards_on(one), boards_on(one)
    # Neither the stop nor the cleanup that found nothing to do wrote the Lease.
    assert version_of(one) == version


def test_a_stop_still_reaches_a_board_the_release_is_on(world):
    # The same stop on a board that still holds the release is written (and the first
    # stop written stays): the check above is "the release left", not "never write".
    one, two = two_shards_on_c0(world, seed=4)
    two.stop_all("shard 2/2 aborted")
    one.stop_all("shard 1/2 aborted")
    board = boards_on(one)[RID]
    assert board["stop"] == {"by": 2, "why": "shard 2/2 aborted"}, board
    assert set(board["shards"]) == {"1", "2"}


def test_a_record_lost_to_a_failing_default_board_is_written_again_and_finds_the_split(
        world, caplog):
    # Shard 1 of 2 is given --shard-board c2; shard 2 none (its board is c0, the
    # default). Shard 1's record on c0 fails once (c0 answers every request 500 just
    # then). Tried again a beat later, it lets shard 1 read c0, where shard 2's entry
    # is: the split, found at once. Before, one lost write meant shard 1 never looked
    # at c0 again, and only --shard-timeout ended the wait ("stopped reporting").
    w, engine, whole = split_world(world, seed=6)
    two = ShardBoard(engine, "r-record", 2, 2, "c0", 20)
    two.whole = whole
    two.publish(wave=PREFLIGHT)
    one = ShardBoard(engine, "r-record", 1, 2, "c2", 20)   # a beat every 5 s
    one.whole = whole
    one.publish(wave=PREFLIGHT)
    w.fleet.set_faults("c0", error_rate=1.0, error_codes=[500])
    with caplog.at_level(logging.WARNING, logger="console.engine.shard_split"):
        one.record_board()
    assert "board not recorded on c0" in caplog.text
    w.fleet.set_faults("c0", error_rate=0.0)
    started = time.monotonic()
    with pytest.raises(ShardStop) as stopped:
        one.wait_for(PREFLIGHT, "pre-flight")
    assert "shards report on different shard boards: 2/2 on cluster 'c0' (no " \
           "--shard-board), 1/2 on cluster 'c2' (--shard-board c2)" in str(stopped.value)
    assert time.monotonic() - started < 20   # within a few beats, not the timeout


def test_a_record_tried_again_never_holds_up_the_barrier(world):
    # Both shards are given --shard-board c2; the default board's cluster c0 failed
    # shard 1's record and then stops answering. The record is tried again while
    # shard 1 waits for shard 2 - but on a thread of its own: shard 2 reporting gets
    # shard 1 across the barrier within a poll or two, not after the try's request
    # timeout (20 s here; before, the wait sat in that request).
    w, engine, whole = split_world(world, seed=7)
    one = ShardBoard(engine, "r-barrier", 1, 2, "c2", 16)   # a beat every 4 s
    one.whole, one.request_timeout = whole, 20
    w.fleet.set_faults("c0", error_rate=1.0, error_codes=[500])
    one.record_board()
    assert not one._recorded
    w.fleet.set_faults("c0", error_rate=0.0, latency=60)
    one.publish(wave=PREFLIGHT)
    before = w.fleet.counters("c0")["total"]
    crossed: dict[str, Any] = {}

    def wait() -> None:
        try:
            one.wait_for(PREFLIGHT, "pre-flight")
            crossed["at"] = time.monotonic()
        except ShardStop as exc:
            crossed["stop"] = str(exc)
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    # The try again is on its way to c0 (which holds it for 60 s)...
    wait_for(lambda: w.fleet.counters("c0")["total"] > before, timeout=60,
             what="shard 1's record tried again")
    two = ShardBoard(engine, "r-barrier", 2, 2, "c2", 16)
    two.whole = whole
    reported = time.monotonic()
    two.publish(wave=PREFLIGHT)
    waiter.join(60)
    assert "at" in crossed, crossed
    assert crossed["at"] - reported < 10, crossed["at"] - reported


def default_board(engine: Any, release_id: str) -> dict:
    """The release's board on c0, the default board of a c0..c3 release."""
    driver = engine.driver("c0")
    return wire.read(driver.client, driver.namespace, wire.board_name(engine.config.app.name),
                     release_id, 10)


def test_a_record_still_on_its_way_at_the_cleanup_does_not_outlive_it(world):
    # Both shards are given --shard-board c2, so each records on c0 (the default
    # board). Shard 1's record is slow: c0 holds every request 6 s, and the record
    # makes three (the board's read, the read and the replace of the update). The
    # replace is on its way when both shards end and clean up, each request now given
    # a 1 s timeout. Before, the cleanup waited for the try 2 x 1 + 1 = 3 s, then left
    # c0 alone (the record had not been written yet), and the record landed after it:
    # {'r-late': {'boards': {'1': 'c2'}}} stayed on c0 until 8 newer releases pushed
    # it off.
    w, engine, whole = split_world(world, seed=8)
    one, two = (ShardBoard(engine, "r-late", k, 2, "c2", 16) for k in (1, 2))
    for board in (one, two):
        board.whole = whole
        board.publish(wave=PREFLIGHT)
    one.request_timeout = 20
    w.fleet.set_faults("c0", latency=6)
    before = w.fleet.counters("c0")["by_verb"].get("update", 0)
    one.record_later()
    wait_for(lambda: w.fleet.counters("c0")["by_verb"].get("update", 0) > before,
             timeout=60, what="shard 1's record replacing the board lease on c0")
    w.fleet.set_faults("c0", latency=0)
    one.request_timeout = 1
    for board in (one, two):
        board.try_publish(ended=Outcome.OK.value, why="done")
    two.clean_boards()
    one.clean_boards()
    recording = one._recording
    assert recording is not None
    wait_for(lambda: not recording.is_alive(), timeout=60, what="the record's try to end")
    assert default_board(engine, "r-late") == {}, default_board(engine, "r-late")
    assert "r-late" not in boards_on(one), boards_on(one)


def test_a_shard_on_the_default_board_starts_no_record_thread(world):
    # Shard 1's board is c0, the default board: it has nothing to record there. Before,
    # every beat of its barrier wait started a thread that did nothing (`record_later`
    # checked only whether a record was due, and `record_board` then returned).
    _, engine, whole = split_world(world, seed=9)
    one = ShardBoard(engine, "r-own", 1, 2, "c0", 16)
    one.whole = whole
    assert one.default == one.coordinator
    here = one.publish(wave=PREFLIGHT)
    # What the barrier's wait does at a beat while shard 2 has not reported.
    one.find_split([2], here, here.get("shards") or {}, read_default=True)
    assert one._recording is None, one._recording


def no_namespace_on_c0(w: Any, seed: int, **faults: Any) -> tuple[Any, ShardBoard]:
    """Shard 1 of 2 of a c0..c3 release given --shard-board c2, reported there; the
    app's namespace is not on c0 (the default board) yet, whose faults are `faults`."""
    world_ = w(["c0", "c1", "c2", "c3"], readiness_delay=0.2, jitter=0.0, seed=seed)
    engine = world_.engine()
    engine.driver("c2").ensure_namespace()
    one = ShardBoard(engine, "r-nons", 1, 2, "c2", 16)
    one.whole = engine.plan(ReleaseRequest(tag="v2"))
    one.publish(wave=PREFLIGHT)
    world_.fleet.set_faults("c0", **faults)
    return world_, one


def made_on_c0(w: Any, one: ShardBoard) -> dict[str, bool]:
    """Whether the app's namespace and the board lease are on c0."""
    namespace = one.engine.driver("c0").namespace
    return {"namespace": w.fleet.get("c0", "/namespaces", "", namespace) is not None,
            "lease": w.fleet.get("c0", "coordination.k8s.io/leases", namespace,
                                 one.name) is not None}


def test_a_record_racing_the_cleanup_makes_no_namespace_or_board_lease_after_it(world):
    # Shard 1's record finds no namespace on c0 (the default board): its board lease's
    # create is answered 404, so it makes the namespace, then the lease, then records.
    # c0 holds every request 2 s; the shard ends while that create is on its way.
    # Before: the try went on after the cleanup began - made the namespace and an empty
    # board lease on c0 ({'namespace': True, 'lease': True}), which nothing takes off
    # (the release's ServiceAccount has no delete on either).
    w, one = no_namespace_on_c0(world, seed=11, latency=2)
    assert made_on_c0(w, one) == {"namespace": False, "lease": False}
    counts = w.fleet.counters
    one.record_later()
    wait_for(lambda: counts("c0")["by_verb_resource"].get("create leases", 0) > 0,
             timeout=60, what="the record's board lease create on its way to c0")
    one.close(Outcome.OK, "done")
    recording = one._recording
    assert recording is not None and not recording.is_alive()   # waited for, and ended
    w.fleet.set_faults("c0", latency=0)
    assert made_on_c0(w, one) == {"namespace": False, "lease": False}, made_on_c0(w, one)


def test_a_shards_end_stays_within_its_bound_where_the_default_board_has_no_namespace_and_keeps_failing(
        world, caplog):
    # c0 (the default board) has no namespace yet and answers 7 requests in 10 with 429
    # (Retry-After 2 s; seeded: the record's calls take 3, 1, 5, 6, 6, 1, 6, 2 tries),
    # with a 1 s request timeout: the shard's end may take `cleanup_wait` = 2 x 6 x
    # (1 + 2) = 36 s. Before, the record's try - namespace and lease made first, eight
    # calls where two were counted - was still running when the cleanup had waited its
    # 36 s for it, then the cleanup's own calls to c0 came on top (the end took over
    # 36 s), and the try went on to make the namespace and the board lease after it.
    w, one = no_namespace_on_c0(world, seed=7727, error_rate=0.7, error_codes=[429],
                                retry_after=2)
    one.request_timeout = 1
    bound = 2 * MAX_ATTEMPTS * (one.request_timeout + MAX_RETRY_AFTER)   # 36 s
    counts = w.fleet.counters
    one.record_later()
    wait_for(lambda: counts("c0")["by_verb_resource"].get("get leases", 0) > 0,
             timeout=60, what="the record's first call on its way to c0")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="console.engine.shard_split"):
        one.close(Outcome.OK, "done")
    took = time.monotonic() - started
    assert took < bound, took
    recording = one._recording
    assert recording is not None and not recording.is_alive()
    assert "still not answered" not in caplog.text
    w.fleet.set_faults("c0", error_rate=0.0)
    assert made_on_c0(w, one) == {"namespace": False, "lease": False}, made_on_c0(w, one)
    assert one.cleanup_wait() == bound


def test_a_beat_older_than_the_shards_end_does_not_undo_the_end(world):
    # A beat of shard 1 (its entry taken before the shard ended) has its replace of the
    # board answered 429 (seeded: the board's second replace; Retry-After 2 s); in that
    # wait the shard writes its end. The beat's retry then meets a 409, reads again and
    # edits again - with its older entry. Before, that took the end off the board
    # ({'wave': -2, ...} without 'ended'): the other shards waited for a shard that had
    # ended, and the last one never took the release's board off.
    w = world(IDS, readiness_delay=0.2, jitter=0.0, seed=368)
    engine = w.engine()
    engine.driver("c0").ensure_namespace()
    one = ShardBoard(engine, RID, 1, 2, "c0", 8)
    one.publish()
    fleet = w.fleet
    fleet.set_faults("c0", error_rate=0.5, error_codes=[429], retry_after=2)
    injected = fleet.counters("c0")["injected_errors"]
    beat = threading.Thread(target=one.try_publish, daemon=True)   # as the beat thread
    beat.start()
    wait_for(lambda: fleet.counters("c0")["injected_errors"] > injected, timeout=30,
             what="the beat's replace answered 429")
    one.try_publish(ended=Outcome.OK.value, why="done")
    assert beat.is_alive()          # (still in its Retry-After wait)
    beat.join(30)
    fleet.set_faults("c0", error_rate=0.0)
    entry = boards_on(one)[RID]["shards"]["1"]
    assert entry.get("ended") == Outcome.OK.value, entry
