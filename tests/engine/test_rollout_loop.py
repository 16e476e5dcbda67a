"""The process's one rollout thread (`console.kube.following`) under trouble, through the
real client against the simulator: opens hanging on silent clusters do not fail a
healthy cluster, and a bug in ending one rollout fails that rollout, not the thread."""

from __future__ import annotations

import logging
import queue
import socket
import threading

import pytest

from console.kube import following
from console.kube.client import ClusterError, KubeClient, new_api_client
from console.kube.driver import ClusterDriver
from console.kube.opener_pool import OpenerPool
from console.kube.rollout import Phase
from console.kube.waking import WakingEvent
from console.kube.watch_hub import HubWatch
from console.render import render
from tests.waiting import wait_for


def driver_for(fleet, cid, **kwargs) -> ClusterDriver:
    client = KubeClient(cid, new_api_client(cid, fleet.kubeconfig(cid)))
    return ClusterDriver(client, "user-service", cid, **kwargs)


def test_opens_hanging_on_silent_clusters_do_not_fail_a_healthy_cluster(world, monkeypatch):
    """Every opener thread held by opens on a cluster that accepts and never answers
    (the TLS handshake hangs until the connect timeout, 5 s): a healthy cluster whose
    watches failed for a moment re-opens them `stall` s later on a thread beyond the
    pool's size, and its rollout completes - its 3 s unreachable grace is not spent
    queueing behind the silent cluster (it was failed as unreachable)."""
    monkeypatch.setattr(following, "OPENERS", OpenerPool(2, stall=0.2))
    w = world(["a"], readiness_delay=0.3, jitter=0.0)
    w.deploy_everywhere("v1")
    driver = driver_for(w.fleet, "a", grace=0.5, unreachable_grace=3.0)
    silent = socket.socket()        # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(30)
    kubeconfig = w.fleet.kubeconfig("a")
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{silent.getsockname()[1]}"
    hung = KubeClient("silent", new_api_client("silent", kubeconfig))
    hangers = [HubWatch(hung, "/api/v1/namespaces/default/configmaps", {}, "cm",
                        queue.SimpleQueue(), None, 30) for _ in range(2)]
    accepted: list[socket.socket] = []
    result: dict[str, object] = {}
    try:
        applied = driver.apply(render(w.config, "a", "v2"), {})
        # Both watches of the rollout fail at their first open (the cluster answers 500)...
        w.fleet.set_faults("a", error_rate=1.0, error_codes=[500])

        def follow() -> None:
            try:
                result["status"] = driver.follow(applied, timeout=60)
            except ClusterError as exc:
                result["error"] = exc

        follower = threading.Thread(target=follow)
        follower.start()
        wait_for(lambda: w.fleet.counters("a")["injected_errors"] >= 2, "the opens to fail")
        # ...then the silent cluster's opens take both opener threads, and only then does
        # the healthy cluster answer again: its re-opens queue behind the hanging ones.
        for hanger in hangers:
            following.OPENERS.submit(hanger.open)
        for _ in hangers:
            accepted.append(silent.accept()[0])
        w.fleet.set_faults("a", error_rate=0.0)
        follower.join(90)
        assert not follower.is_alive(), "the rollout was never decided"
        assert "error" not in result, result["error"]
        assert result["status"].phase is Phase.COMPLETE      # type: ignore[union-attr]
        assert w.ready_pods("a", "v2") == 2
    finally:
        w.fleet.set_faults("a", error_rate=0.0)
        for hanger in hangers:
            hanger.stop()
        silent.close()
        for sock in accepted:
            sock.close()
        hung.close()
        driver.client.close()


class CancelThatBreaksOnRemove(WakingEvent):
    """A caller's cancel event with a bug: taking its waker off raises (the rollout's
    ending then raised past `step` and ended the one rollout thread)."""

    def remove_waker(self, wake) -> None:  # noqa: ANN001 - WakingEvent's signature
        raise RuntimeError("the cancel event broke")


def test_a_bug_ending_one_rollout_fails_it_and_the_thread_goes_on(world, caplog):
    """The first rollout's verdict cannot be handed over cleanly (its cancel event
    raises): it fails with that error, logged, and a second rollout followed after it on
    the same thread still completes (before, the thread died and both waited forever)."""
    w = world(["a", "b"], readiness_delay=0.3, jitter=0.0)
    w.deploy_everywhere("v1")
    results: dict[str, object] = {}

    def follow(cid: str, cancel: threading.Event | None) -> None:
        driver = driver_for(w.fleet, cid, grace=0.5)
        try:
            applied = driver.apply(render(w.config, cid, "v2"), {})
            results[cid] = driver.follow(applied, timeout=60, cancel=cancel)
        except Exception as exc:  # noqa: BLE001 - the verdict under test
            results[cid] = exc
        finally:
            driver.client.close()

    with caplog.at_level(logging.ERROR, logger="console.kube.following"):
        first = threading.Thread(target=follow, args=("a", CancelThatBreaksOnRemove()))
        first.start()
        first.join(60)
        assert not first.is_alive(), "the rollout's caller waits forever"
        second = threading.Thread(target=follow, args=("b", None))
        second.start()
        second.join(60)
        assert not second.is_alive(), "the rollout thread no longer serves rollouts"
    assert isinstance(results["a"], RuntimeError) and "cancel event broke" in str(results["a"])
    assert results["b"].phase is Phase.COMPLETE             # type: ignore[union-attr]
    assert any(r.getMessage() == "ending the rollout on a failed" and r.exc_info
               and "cancel event broke" in str(r.exc_info[1])
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_held_up_rollout_thread_cannot_hold_the_caller_for_ever(world, monkeypatch):
    """The rollout thread is held up (its `on_progress` blocks, as a printer on a blocked
    pipe did): the caller of `follow` gets a verdict `LATE` s past the rollout's
    deadline - a failure saying why - instead of waiting for ever (before, it waited
    until the thread came back)."""
    monkeypatch.setattr(following, "LATE", 2.0, raising=False)
    w = world(["a"], readiness_delay=0.3, jitter=0.0)
    w.deploy_everywhere("v1")
    driver = driver_for(w.fleet, "a", grace=0.5)
    held, holding = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def blocked(_progress) -> None:  # noqa: ANN001 - a Progress
        holding.set()
        held.wait(120)

    def follow() -> None:
        try:
            result["status"] = driver.follow(applied, timeout=2.0, on_progress=blocked)
        except ClusterError as exc:
            result["error"] = exc

    try:
        applied = driver.apply(render(w.config, "a", "v2"), {})
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        wait_for(holding.is_set, "the rollout thread to be held up")
        follower.join(60)
        assert not follower.is_alive(), "the caller waits for ever for a held-up thread"
        assert "no verdict on the rollout 2s past its 2s deadline" in str(result["error"]), \
            result
    finally:
        held.set()          # the process's one rollout thread serves the next tests
        driver.client.close()
