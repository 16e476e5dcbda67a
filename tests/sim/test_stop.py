"""Stopping a fleet ends everything it runs: no task of its loop is left pending when
`SimFleet.stop` returns, so none is destroyed later - after its loop closed - with an
error nobody can catch (the `PytestUnraisableExceptionWarning` seen now and then in full
suite runs: a watch's `Queue.get` finalised once the loop was closed)."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

from console.kube.client import KubeClient, new_api_client
from console.sim import SimFleet
from tests.sim.test_wire import Raw
from tests.waiting import wait_for


def _left_and_unraisable(loop: asyncio.AbstractEventLoop, unraisable: list[Any]
                         ) -> tuple[list[str], list[str]]:
    """The tasks of `loop` still pending, and what collecting them raised unraisably."""
    pending = [repr(task.get_coro()) for task in asyncio.all_tasks(loop) if not task.done()]
    gc.collect()
    return pending, [f"{u.exc_type.__name__}: {u.exc_value} ({u.object!r})"
                     for u in unraisable]


def test_a_request_still_in_its_latency_is_ended_by_the_stop(monkeypatch):
    """A watch request waits out its injected latency (5 s) when the fleet stops, its
    client gone. (Before: its task was left pending on the closed loop - 'Task was
    destroyed but it is pending!' once collected.)"""
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    fleet = SimFleet(["a"], seed=3, readiness_delay=0.2, jitter=0.0).start()
    loop = fleet._loop
    assert loop is not None
    try:
        fleet.set_faults("a", latency=5.0)
        watch = Raw(fleet, "a").conn()
        watch.request("GET", "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=60",
                      headers={"Authorization": f"Bearer {fleet.admin_token('a')}"})
        wait_for(lambda: fleet.counters("a")["by_verb"].get("watch") == 1,
                 "the watch to reach the cluster")
        watch.close()
    finally:
        fleet.stop()
    assert _left_and_unraisable(loop, unraisable) == ([], [])


def test_a_watch_the_stop_did_not_end_is_cancelled_before_the_loop_closes(monkeypatch):
    """A watch waiting for events that the stop's ending of every watch missed (as one
    registered just after it would be: taken off the cluster's list here) and whose
    client went away, so the server's shutdown does not know its connection either.
    (Before: its handler was left waiting in `Queue.get` on the closed loop; collecting it
    raised 'RuntimeError: Event loop is closed' - unraisable, the warning of full suite
    runs.)"""
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    fleet = SimFleet(["a"], seed=3, readiness_delay=0.2, jitter=0.0).start()
    loop = fleet._loop
    assert loop is not None
    client = KubeClient("a", new_api_client("a", fleet.kubeconfig("a")))
    store = fleet.clusters["a"].store
    try:
        stream = client.watch("/api/v1/namespaces/default/pods", {}, 60)
        wait_for(lambda: fleet.call(lambda: len(store.watchers)) == 1,
                 "the watch to wait for events")
        stream.close()
        client.close()
        fleet.call(store.watchers.clear)
    finally:
        fleet.stop()
    assert _left_and_unraisable(loop, unraisable) == ([], [])
