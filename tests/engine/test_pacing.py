"""Pacing (issue 14, item 4): at most N clusters start in any sliding window; a held
cluster is told (cluster_paced) and starts (cluster_started) when a slot frees."""

from __future__ import annotations

import pytest

from console.engine import ReleaseRequest
from console.engine.pacing import Pacer
from console.errors import ValidationError
from console.events import Kind


def test_the_window_slides() -> None:
    now = [0.0]
    pacer = Pacer((2, 10.0), clock=lambda: now[0])
    assert pacer.delay() == 0
    pacer.reserve("a")
    pacer.began("a")                     # handed over and begun at once
    now[0] = 4.0
    pacer.reserve("b")
    pacer.began("b")
    assert pacer.delay() == 6.0          # a leaves the window at 10
    now[0] = 10.0
    assert pacer.delay() == 0
    pacer.reserve("c")
    assert pacer.delay() == 4.0          # b leaves at 14
    now[0] = 12.0
    pacer.began("c")                     # c's rollout really began later: it counts from 12
    now[0] = 14.0
    assert pacer.delay() == 0
    pacer.reserve("d")
    assert pacer.delay() == 8.0          # c (12) leaves at 22
    assert Pacer(None).delay() == 0


def test_a_paced_parallel_release_spreads_its_starts(world) -> None:
    ids = [f"c{i}" for i in range(6)]
    w = world(ids, seed=31, readiness_delay=0.1, jitter=0.05)
    engine = w.engine()
    try:
        result = engine.run(ReleaseRequest(tag="v1", strategy="parallel", max_parallel=6,
                                           pace="2/1.5s"), w.approve)
    finally:
        engine.close()
    assert result.exit_code == 0, result
    starts = sorted(e.ts for e in w.recorder.of(Kind.CLUSTER_STARTED))
    assert len(starts) == 6
    # At most 2 in any 1.5 s: the 3rd start is a window after the 1st, and so on.
    assert all(starts[i + 2] - starts[i] >= 1.5 - 0.05 for i in range(4)), starts
    paced = w.recorder.of(Kind.CLUSTER_PACED)
    assert sorted(e.cluster for e in paced) == ids[2:]          # each held one told once
    assert all((e.data["max_starts"], e.data["window"]) == (2, 1.5) for e in paced)
    for event in paced:   # told before it started
        started = next(e for e in w.recorder.of(Kind.CLUSTER_STARTED)
                       if e.cluster == event.cluster)
        assert started.ts >= event.ts


def test_max_starts_in_the_fleet_file_and_the_flag(tmp_path) -> None:
    from console.config import load
    from console.plan import build_plan
    path = tmp_path / "clusters.yaml"
    path.write_text("app: {name: web, image: r.example.com/web}\n"
                    "clusters:\n  - {id: a}\n  - {id: b}\n"
                    "strategies:\n  wide: {waves: [rest], max_starts: 10/30s}\n")
    config = load(path)
    assert build_plan(config, config.ids, "wide").max_starts == (10, 30.0)
    assert build_plan(config, config.ids, "wide", pace="3/1m").max_starts == (3, 60.0)
    assert build_plan(config, config.ids, "wide").to_json()["max_starts"] == [10, 30.0]
    with pytest.raises(ValidationError, match="--pace"):
        build_plan(config, config.ids, "parallel", pace="fast")
    path.write_text(path.read_text().replace("10/30s", "ten"))
    with pytest.raises(Exception, match=r"clusters.yaml:\d+: strategies.wide.max_starts"):
        load(path)


def test_a_retried_start_counts_besides_the_first_one() -> None:
    now = [0.0]
    pacer = Pacer((2, 10.0), clock=lambda: now[0])
    pacer.reserve("a")
    pacer.began("a")
    now[0] = 1.0
    assert pacer.delay() == 0
    pacer.reserve("a")                   # a failed and is retried: a second start
    assert pacer.delay() == 9.0          # two starts in the window (0 and 1)
    now[0] = 3.0
    pacer.began("a")                     # the retry's rollout began at 3; the first stays 0
    now[0] = 5.0
    assert pacer.delay() == 5.0          # the first start (0) leaves the window at 10
    now[0] = 10.0
    assert pacer.delay() == 0
    pacer.reserve("b")
    assert pacer.delay() == 3.0          # a's retry (3) leaves at 13, b (10) at 20


def test_a_retried_cluster_is_paced_like_any_other_start(world) -> None:
    # One start per 3 s: a starts at once, b is held; b fails (never pulls), the operator
    # retries it, and the retry waits for a slot too - told cluster_paced again.
    w = world(["a", "b"], seed=32, readiness_delay=0.1, jitter=0.0)
    w.deploy_everywhere("v1")
    engine, control = w.fixed_and_retried("b", Kind.CLUSTER_FAILED, by="alice")
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel", max_parallel=2,
                                       max_failures="1", pace="1/3s"), w.approve, control)
    assert result.exit_code == 0, result
    assert (w.version("a"), w.version("b")) == ("v2", "v2")
    starts = [e for e in w.recorder.of(Kind.CLUSTER_STARTED)]
    assert [e.cluster for e in starts] == ["a", "b", "b"]
    # At most one start in any 3 s: the retry too.
    assert all(later.ts - earlier.ts >= 3.0 - 0.05 for earlier, later in zip(starts, starts[1:]))
    paced = [e for e in w.recorder.of(Kind.CLUSTER_PACED) if e.cluster == "b"]
    assert len(paced) == 2, [e.message for e in paced]   # the first start, and the retry
    retried = next(e for e in w.recorder.of(Kind.STEERED) if e.data.get("action") == "retry")
    assert retried.ts <= paced[1].ts <= starts[2].ts


def test_a_reserved_start_counts_until_it_begins_or_is_released() -> None:
    # A hand-off to the real start slower than the window: the reserved start must not
    # leave the window before it began (it did: pruned by its reservation time).
    now = [0.0]
    pacer = Pacer((2, 10.0), clock=lambda: now[0])
    pacer.reserve("a")
    pacer.reserve("b")
    now[0] = 25.0               # neither began yet, 2.5 windows later
    assert pacer.delay() > 0
    pacer.began("a")            # a counts from its real start: until 35
    pacer.release("b")          # b's worker ended without starting: its slot frees
    assert pacer.delay() == 0
    pacer.reserve("c")
    now[0] = 30.0
    pacer.began("c")
    assert pacer.delay() == 5.0     # a leaves the window at 35
