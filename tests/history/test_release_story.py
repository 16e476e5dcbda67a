"""The ledger attached to the real engine, releasing to the simulated fleet.

Releases are recorded as they happen, the version matrix compares the ledger with what
the clusters really run (drift after a hand-made `kubectl set image`), manual rollbacks
are records too, and a console killed with SIGKILL mid-rollout is reconciled by the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from console.config import load
from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest
from console.history import EventLedger, Ledger
from tests.history.conftest import git, remote_records

REPO = Path(__file__).resolve().parents[2]
APP = "user-service"
KUBECTL = Path(sys.executable).parent / "kubectl"


def approve(_request) -> GateAnswer:
    return GateAnswer(GateDecision.APPROVE, by="test")


@pytest.fixture
def fleet_config(sim_fleet, tmp_path: Path, bare_remote: Path):
    """Factory: a started fleet and its loaded config, the ledger beside it with a remote."""

    def make(ids: Sequence[str], **sim):
        fleet = sim_fleet(list(ids), **sim)
        doc = {"app": {"name": APP, "image": "registry.example.com/apps/user-service",
                       "manifests": str(REPO / "deploy" / "user-service"),
                       "namespace": "{cluster}", "rollout_timeout": "60s",
                       "history": {"remote": str(bare_remote)}},
               "defaults": {"values": {"replicas": 2, "resources": {
                   "requests": {"cpu": "10m", "memory": "16Mi"}}}},
               "clusters": [{"id": cid, "credentials": {"kubeconfig": f"{cid}.yaml"}}
                            for cid in ids]}
        source = tmp_path / "fleet-in.yaml"
        source.write_text(yaml.safe_dump(doc, sort_keys=False))
        path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=source)
        return fleet, path, load(path)

    return make


def live_versions(config) -> dict[str, str | None]:
    engine = Engine(config)
    try:
        return {s.cluster: s.version for s in engine.status()}
    finally:
        engine.close()


def test_releases_rollbacks_and_drift_in_the_ledger(fleet_config, bare_remote: Path,
                                                    tmp_path: Path) -> None:
    fleet, path, config = fleet_config(["a", "b", "c"])
    ledger = Ledger.for_config(config)
    assert ledger.path == (path.parent / ".release-history").resolve()
    warnings: list[str] = []
    engine = Engine(config, [EventLedger(ledger, on_warning=warnings.append)], grace=0.5)
    try:
        first = engine.run(ReleaseRequest(tag="v1", strategy="parallel", operator="alice"),
                           approve)
        assert first.exit_code == 0
        fleet.set_faults("b", never_pull=["v2"])
        second = engine.run(ReleaseRequest(tag="v2", operator="bob"), approve)   # serial
        assert (second.outcome, [c.outcome for c in second.clusters]) == (
            "failed", ["healthy", "rolled_back", "skipped"])

        old, new = ledger.history()
        assert (old.id, old.outcome, old.operator) == (first.release_id, "ok", "alice")
        assert {c.cluster: c.outcome for c in old.clusters} == {
            "a": "healthy", "b": "healthy", "c": "healthy"}
        assert (new.id, new.outcome, new.operator, new.version) == (
            second.release_id, "failed", "bob", "v2")
        b = new.outcome_of("b")
        assert (b.outcome, b.from_version, b.to_version, b.rolled_back_to, b.version) == (
            "rolled_back", "v1", "v2", "v1", "v1")
        assert "ErrImagePull" in b.error or "ImagePullBackOff" in b.error
        assert new.outcome_of("c").outcome == "skipped"
        # Committed with the operator as author, under the end's own subject (the last
        # record with one; tests/history/test_commit_subjects.py drives the ordering that
        # once folded it into the commit of the cluster line before it), and pushed.
        head = git(ledger.path, "show", "HEAD:history/user-service.jsonl")
        assert any(json.loads(line).get("type") == "end"
                   and json.loads(line).get("release") == second.release_id
                   for line in head.splitlines()), head[-400:]
        assert git(ledger.path, "log", "-1", "--format=%an|%s").strip() == \
            "bob|release user-service v2 -> a,b,c (failed)"
        assert [r["outcome"] for r in remote_records(bare_remote) if r["type"] == "end"] == [
            "ok", "failed"]
        assert warnings == []

        rows = {r.cluster: r for r in ledger.matrix(live_versions(config))}
        assert [(rows[c].live, rows[c].recorded, rows[c].last_good, rows[c].drift)
                for c in "abc"] == [("v2", "v2", "v2", False), ("v1", "v1", "v1", False),
                                    ("v1", "v1", "v1", False)]
        assert rows["a"].recorded_by == "bob" and rows["c"].recorded_by == "alice"

        # Someone changes c by hand: the matrix shows the drift.
        kubeconfig = tmp_path / "c-kubeconfig.yaml"
        kubeconfig.write_text(yaml.safe_dump(fleet.kubeconfig("c")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = str(tmp_path)
        subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir",
                        str(tmp_path / "kcache"), "-n", "c", "set", "image",
                        f"deployment/{APP}",
                        f"{APP}=registry.example.com/apps/user-service:hotfix"],
                       check=True, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                       timeout=60)
        rows = {r.cluster: r for r in ledger.matrix(live_versions(config))}
        assert (rows["c"].live, rows["c"].recorded, rows["c"].drift) == ("hotfix", "v1", True)
        assert not rows["a"].drift and not rows["b"].drift

        # A manual rollback is a record of its own.
        result = engine.rollback("a", by="carol")
        assert result.outcome == "rolled_back"
        action = ledger.history()[-1]
        assert (action.kind, action.operator, action.targets, action.version,
                action.outcome) == ("rollback", "carol", ("a",), "v1", "ok")
        assert action.outcome_of("a").from_version == "v2"
        assert ledger.matrix({"a": "v1"})[0].recorded == "v1"
        assert ledger.last_good("a") == "v1"
    finally:
        engine.close()
        ledger.close()


KILLED_RELEASE = textwrap.dedent("""
    import os, signal, sys
    from console.config import load
    from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest
    from console.events import Kind
    from console.history import EventLedger, Ledger

    config = load(sys.argv[1])
    ledger = Ledger.for_config(config)

    def die_mid_rollout(event):
        # b is rolling out (its Deployment is written, its pods are not all ready).
        if event.kind is Kind.CLUSTER_PROGRESS and event.cluster == "b":
            os.kill(os.getpid(), signal.SIGKILL)

    engine = Engine(config, [EventLedger(ledger), die_mid_rollout], grace=0.5)
    engine.run(ReleaseRequest(tag="v2", operator="alice"),
               lambda request: GateAnswer(GateDecision.APPROVE))
    sys.exit("the release was expected to be killed")
""")


def test_a_release_killed_mid_rollout_is_reconciled_by_the_next_console(
        fleet_config, bare_remote: Path) -> None:
    fleet, path, config = fleet_config(["a", "b", "c"], readiness_delay=0.5)
    setup = Engine(config)
    try:
        assert setup.run(ReleaseRequest(tag="v1", strategy="parallel"), approve).exit_code == 0
    finally:
        setup.close()

    proc = subprocess.run([sys.executable, "-c", KILLED_RELEASE, str(path)], timeout=120,
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == -9, proc.stderr[-2000:]

    # The next console: it finds the unfinished release and records what really happened.
    ledger = Ledger.for_config(config)
    try:
        [unfinished] = ledger.unfinished()
        assert (unfinished.version, unfinished.operator, unfinished.targets) == (
            "v2", "alice", ("a", "b", "c"))
        assert [c.cluster for c in unfinished.clusters] == ["a"]     # a finished before
        live = live_versions(config)
        assert live == {"a": "v2", "b": "v2", "c": "v1"}
        asked: list = []

        def read_live(clusters):
            asked.append(tuple(clusters))
            return {c: live[c] for c in clusters}

        [release] = ledger.reconcile_unfinished(read_live)
        assert asked == [("a", "b", "c")]
        assert (release.id, release.outcome) == (unfinished.id, "interrupted")
        assert [(c.cluster, c.outcome, c.version, c.reconciled) for c in release.clusters] == [
            ("a", "healthy", "v2", False), ("b", "interrupted", "v2", True),
            ("c", "skipped", None, True)]
        assert ledger.unfinished() == []
        assert [r.id for r in ledger.history()] == [release.id]   # set-up ran unrecorded
        rows = {r.cluster: r for r in ledger.matrix(live)}
        assert (rows["b"].recorded, rows["b"].drift) == ("v2", False)
        # Pushed: the shared history knows too.
        ends = [r for r in remote_records(bare_remote) if r["type"] == "end"]
        assert [e["outcome"] for e in ends] == ["interrupted"]
    finally:
        ledger.close()


def test_two_consoles_releasing_to_one_cluster_exactly_one_proceeds(fleet_config) -> None:
    """How the engine is meant to use the lock: take every target's lease, then release."""
    import threading

    from console.locks import LockHeld, ReleaseLock

    fleet, path, config = fleet_config(["a", "b"], readiness_delay=0.5)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def console(tag: str, user: str) -> None:
        engine = Engine(config, grace=0.5)
        try:
            clients = {}
            for cid in ("a", "b"):
                driver = engine.driver(cid)
                driver.ensure_namespace()       # the lease lives in the app namespace
                clients[cid] = (driver.client, driver.namespace)
            lock = ReleaseLock.for_clusters(clients, APP, f"rel-{tag}", user=user)
            barrier.wait()
            try:
                lock.acquire()
            except LockHeld as refused:
                outcomes[tag] = refused
                return
            try:
                outcomes[tag] = engine.run(ReleaseRequest(tag=tag, operator=user), approve)
            finally:
                lock.release()
        finally:
            engine.close()

    threads = [threading.Thread(target=console, args=(tag, user))
               for tag, user in (("v1", "alice"), ("v2", "bob"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    refused = [tag for tag, out in outcomes.items() if isinstance(out, LockHeld)]
    ran = [tag for tag, out in outcomes.items() if not isinstance(out, LockHeld)]
    assert len(refused) == 1 and len(ran) == 1, outcomes
    winner, loser = ran[0], refused[0]
    assert outcomes[winner].exit_code == 0
    error = outcomes[loser]
    assert error.exit_code == 2
    assert f"/rel-{winner} " in str(error) and "is being released by" in str(error)
    # Only the winner's version reached the clusters; the leases are free again.
    assert live_versions(config) == {"a": winner, "b": winner}
    from console.kube.client import new_api_client
    from console.locks import ClusterLease
    for cid in ("a", "b"):
        api = new_api_client(cid, fleet.kubeconfig(cid))
        try:
            lease = ClusterLease(api, cid, cid, APP, "someone-else")
            assert lease.read() is not None and lease.holder() is None
        finally:
            api.close()


def test_a_failed_release_notifies_with_the_clusters_real_errors(fleet_config, webhook) -> None:
    from console.config import NotifyConfig
    from console.notify import Notifier, NotifyListener

    fleet, path, config = fleet_config(["a", "b"])
    fleet.set_faults("b", never_pull=["v1"])
    notifier = Notifier(NotifyConfig(on=("failure",), slack_webhook=webhook.url),
                        app=config.app.name)
    listener = NotifyListener(notifier)
    engine = Engine(config, [listener], grace=0.5)
    try:
        result = engine.run(ReleaseRequest(tag="v1", strategy="parallel", operator="alice"),
                            approve)
    finally:
        engine.close()
    assert result.outcome == "failed"
    [delivery] = listener.close(timeout=30)
    assert delivery.ok, delivery.detail
    [body] = webhook.bodies
    assert (body["app"], body["version"], body["release"], body["operator"]) == (
        APP, "v1", result.release_id, "alice")
    assert body["failed_clusters"] == ["b"]
    assert "ErrImagePull" in body["errors"]["b"] or "ImagePullBackOff" in body["errors"]["b"]
