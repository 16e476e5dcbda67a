"""Rollback scope (issue 14, item 5): `on_failure: cluster | wave | release` - a failed
cluster rolls back alone (the default), with every cluster of its wave, or with every
cluster the release reached, which ends the release. On the simulator, one cluster's
image never pulling."""

from __future__ import annotations

import pytest

from console.engine import ReleaseRequest
from console.events import Kind

WAVES = [["s1", "s2"], ["p1"], ["p2"]]


def release(w, on_failure: str | None, strategy: str = "staged", **extra):
    engine = w.engine()
    try:
        return engine.run(ReleaseRequest(tag="v2", strategy=strategy, on_failure=on_failure,
                                         **extra), w.approve)
    finally:
        engine.close()


@pytest.mark.parametrize("scope, expected, versions, code", [
    # The default: only the failed cluster goes back; no new cluster starts after it.
    ("cluster", {"s1": "healthy", "s2": "rolled_back", "p1": "skipped", "p2": "skipped"},
     ("v2", "v1", "v1", "v1"), 1),
    # Its wave goes back with it.
    ("wave", {"s1": "rolled_back", "s2": "rolled_back", "p1": "skipped", "p2": "skipped"},
     ("v1", "v1", "v1", "v1"), 1),
])
def test_a_failure_rolls_back_its_cluster_or_its_wave(world, scope, expected, versions, code):
    w = world(["s1", "s2", "p1", "p2"], seed=51,
              strategies={"staged": {"waves": WAVES, "on_failure": scope}})
    w.deploy_everywhere("v1")
    w.fleet.set_faults("s2", never_pull=["v2"])
    result = release(w, None)
    assert result.exit_code == code, result
    assert {c.cluster: c.outcome.value for c in result.clusters} == expected
    assert tuple(w.version(c) for c in ("s1", "s2", "p1", "p2")) == versions
    if scope == "wave":
        s1 = next(c for c in result.clusters if c.cluster == "s1")
        assert "on_failure: wave" in (s1.error or "") and s1.rolled_back_to == "v1"


def test_release_scope_rolls_back_every_earlier_wave_and_ends(world):
    # Failures tolerated (max_failures 1), so only the scope makes p1's failure undo s1, s2.
    w = world(["s1", "s2", "p1", "p2"], seed=52,
              strategies={"staged": {"waves": WAVES, "max_failures": 1}})
    w.deploy_everywhere("v1")
    w.fleet.set_faults("p1", never_pull=["v2"])
    result = release(w, "release")
    assert result.exit_code == 1, result
    assert {c.cluster: c.outcome.value for c in result.clusters} == {
        "s1": "rolled_back", "s2": "rolled_back", "p1": "rolled_back", "p2": "skipped"}
    assert "on_failure: release" in result.message
    assert [w.version(c) for c in ("s1", "s2", "p1", "p2")] == ["v1"] * 4
    rolled = {e.cluster for e in w.recorder.of(Kind.CLUSTER_ROLLED_BACK) if e.data["ok"]}
    assert rolled == {"s1", "s2", "p1"}


def test_the_same_failure_with_the_default_scope_goes_on_within_its_budget(world):
    w = world(["s1", "s2", "p1", "p2"], seed=53,
              strategies={"staged": {"waves": WAVES, "max_failures": 1}})
    w.deploy_everywhere("v1")
    w.fleet.set_faults("p1", never_pull=["v2"])
    result = release(w, None)
    assert result.exit_code == 1 and "within the failure budget" in result.message
    assert [w.version(c) for c in ("s1", "s2", "p1", "p2")] == ["v2", "v2", "v1", "v2"]


def test_wave_scope_with_budget_left_stops_the_release_after_rolling_the_wave_back(world):
    # A tolerated failure (max_failures 1) still rolls its wave back; that judged the
    # version bad, so no later wave deploys it (it did: p1, p2 went to v2).
    w = world(["s1", "s2", "p1", "p2"], seed=54,
              strategies={"staged": {"waves": WAVES, "max_failures": 1,
                                     "on_failure": "wave"}})
    w.deploy_everywhere("v1")
    w.fleet.set_faults("s2", never_pull=["v2"])
    result = release(w, None)
    assert result.exit_code == 1, result
    assert {c.cluster: c.outcome.value for c in result.clusters} == {
        "s1": "rolled_back", "s2": "rolled_back", "p1": "skipped", "p2": "skipped"}
    assert "on_failure: wave" in result.message, result.message
    assert [w.version(c) for c in ("s1", "s2", "p1", "p2")] == ["v1"] * 4
    assert not [e for e in w.recorder.of(Kind.CLUSTER_STARTED) if e.cluster in ("p1", "p2")]
