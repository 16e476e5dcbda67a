"""A release's process, and `status`'s, collects cyclic garbage at a slower pace
(console.engine.collector): the young generation every YOUNG allocations, never faster
than someone set it."""

from __future__ import annotations

import gc
import weakref

import pytest

from console.engine.collector import YOUNG, pace_for_releases


class _Node:
    self: object


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_young_generation_is_collected_less_often_the_rest_as_before(thresholds):
    gc.set_threshold(700, 10, 10)
    pace_for_releases()
    assert gc.get_threshold() == (YOUNG, 10, 10)
    # Garbage in cycles is still collected, by the collector's own pace: after a few
    # times YOUNG new container objects, with no `gc.collect()` call.
    node = _Node()
    node.self = node
    gone = weakref.ref(node)
    del node
    kept = [[] for _ in range(YOUNG * 3)]
    assert gone() is None, "a cycle outlived three young generations' allocations"
    del kept


def test_a_slower_pace_or_a_collector_turned_off_is_kept(thresholds):
    gc.set_threshold(YOUNG * 2, 5, 5)
    pace_for_releases()
    assert gc.get_threshold() == (YOUNG * 2, 5, 5)
    gc.set_threshold(0, 10, 10)
    pace_for_releases()
    assert gc.get_threshold() == (0, 10, 10)


def test_status_reads_a_fleet_at_the_releases_pace(world, capsys, thresholds):
    """`release-console status` keeps a client per cluster alive as a release does: it
    collects at the same pace (set before its imports and the fleet file)."""
    from console.cli import main
    w = world(["a", "b"])
    w.deploy_everywhere("v1")
    gc.set_threshold(700, 10, 10)
    assert main(["status", "--config", str(w.config_path), "--json"]) == 0
    assert gc.get_threshold() == (YOUNG, 10, 10)
    assert '"version": "v1"' in capsys.readouterr().out
