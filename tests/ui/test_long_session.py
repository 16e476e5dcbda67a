"""A console left open for days: what its engine process keeps per release stays bounded
(issue 11 item 20). Each part is fed many releases' events, as a long session would."""

from __future__ import annotations

from console.config import NotifyConfig
from console.engine import Engine
from console.events import Event, Kind
from console.history import EventLedger
from console.notify import Notifier, NotifyListener
from tests.history.conftest import make_ledger, webhook  # noqa: F401 - pytest fixtures

RELEASES = 250


def release(rid: str, outcome: str) -> list[Event]:
    """A release's first and last events (what every release has)."""
    return [Event(Kind.RELEASE_PLANNED, rid, data={
                "app": "user-service", "version": "v2", "targets": ["a"], "operator": "ann"}),
            Event(Kind.RELEASE_FINISHED, rid, data={"outcome": outcome, "exit_code": 2})]


def test_the_notifier_forgets_finished_sends(webhook) -> None:  # noqa: F811 - fixture
    listener = NotifyListener(Notifier(NotifyConfig(on=("failure",), slack_webhook=webhook.url,
                                                    timeout=10.0), app="user-service"), keep=10)
    try:
        for i in range(30):
            for event in release(f"r-{i}", "failed"):
                listener(event)
        deliveries = listener.wait(timeout=60)
        assert len(webhook.bodies) == 30   # every release was notified ...
        assert len(deliveries) == 10   # ... the listener keeps the latest
        assert deliveries[-1].ok
        listener(release("r-last", "failed")[0])
        listener(release("r-last", "failed")[1])
        assert len(listener._futures) <= 2   # finished sends are forgotten
    finally:
        listener.close(timeout=30)


def test_the_ledger_listener_forgets_releases_that_failed_preflight(make_ledger) -> None:  # noqa: F811
    listener = EventLedger(make_ledger())
    for i in range(RELEASES):
        for event in release(f"r-{i}", "preflight_failed"):
            listener(event)
    assert listener._planned == {}


def test_the_engine_keeps_only_the_latest_listener_errors(tmp_path) -> None:
    from console.config import load
    fleet = tmp_path / "clusters.yaml"
    (tmp_path / "a.yaml").write_text("{}\n")
    (tmp_path / "deploy").mkdir()
    fleet.write_text("app: {name: web, image: registry.example.com/web, manifests: deploy}\n"
                     "clusters: [{id: a, credentials: {kubeconfig: a.yaml}}]\n")

    def broken(_event: Event) -> None:
        raise RuntimeError("listener bug")

    engine = Engine(load(fleet), [broken])
    try:
        for i in range(1000):
            engine.event(Kind.CLUSTER_PROGRESS, f"r-{i}", "a", "progress")
        assert 0 < len(engine.listener_errors) <= 100
        assert "listener bug" in engine.listener_errors[-1]
    finally:
        engine.close()


def test_the_bridge_thins_out_progress_when_the_ui_falls_behind() -> None:
    from console.ui.bridge import EventBridge
    posted: list[object] = []
    bridge = EventBridge(posted.append, backlog=100)
    events = [Event(Kind.CLUSTER_STARTED, "r", c) for c in ("a", "b")]
    for i in range(1000):
        events.append(Event(Kind.CLUSTER_PROGRESS, "r", "ab"[i % 2], data={"ready": i}))
    events += [Event(Kind.CLUSTER_HEALTHY, "r", c) for c in ("a", "b")]
    for event in events:
        bridge(event)
    drained = bridge.drain()
    assert len(drained) <= 100 and len(posted) == 1
    # Every event but superseded progress, in order; each cluster's latest progress stays.
    assert [e for e in drained if e.kind is not Kind.CLUSTER_PROGRESS] == \
        [e for e in events if e.kind is not Kind.CLUSTER_PROGRESS]
    last = {e.cluster: e.data["ready"] for e in drained if e.kind is Kind.CLUSTER_PROGRESS}
    assert last == {"a": 998, "b": 999}
