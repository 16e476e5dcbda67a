"""The fleet view model, fed with real `Event` objects as the engine emits them."""

from __future__ import annotations

from types import SimpleNamespace

from console.events import Event, Kind, Outcome
from console.ui.state import (ClusterInfo, FleetState, Phase, format_duration, matches)

FLEET = [
    ClusterInfo("staging", ("staging", "eu")),
    ClusterInfo("prod-eu-10pct", ("prod", "eu", "canary"), production=True),
    ClusterInfo("prod-eu", ("prod", "eu"), production=True),
    ClusterInfo("prod-us", ("prod", "us"), production=True),
]


def ev(kind: Kind, cluster: str | None = None, ts: float = 100.0, message: str = "",
       **data: object) -> Event:
    return Event(kind, "r-1", cluster=cluster, message=message, data=dict(data), ts=ts)


def planned(state: FleetState, targets: list[str], waves: list[list[str]] | None = None) -> None:
    state.apply(ev(Kind.RELEASE_PLANNED, app="user-service", version="v2", image="img:v2",
                   strategy="canary", targets=targets, waves=waves or [targets], operator="alice"))


def test_every_phase_has_a_glyph_and_a_word() -> None:
    glyphs = {p.glyph for p in Phase}
    assert len(glyphs) == len(Phase)
    assert Phase.ROLLING_BACK.word == "rolling back"
    assert all(p.word for p in Phase)


def test_every_recorded_outcome_has_its_phase_on_the_history_screen() -> None:
    # The history screen fell back to "failed" for an outcome it did not know (an
    # operator's skip was drawn as a failure) and to "rolling" for a release's end.
    from console.ui.screens.history import OUTCOME_PHASE
    assert set(OUTCOME_PHASE) == set(Outcome)
    assert OUTCOME_PHASE[Outcome.SKIPPED_BY_OPERATOR] is Phase.SKIPPED


def test_a_release_moves_rows_through_their_phases() -> None:
    now = [200.0]
    state = FleetState(FLEET, clock=lambda: now[0])
    planned(state, ["staging", "prod-eu"], [["staging"], ["prod-eu"]])
    assert state.clusters["staging"].phase is Phase.WAITING
    assert state.clusters["staging"].target == "v2"
    assert state.clusters["prod-eu"].wave == 1
    assert state.clusters["prod-us"].phase is Phase.IDLE and state.clusters["prod-us"].target is None

    state.apply(ev(Kind.PREFLIGHT_STARTED, checks=["reachable"]))
    assert state.clusters["prod-eu"].phase is Phase.CHECKING
    state.apply(ev(Kind.PREFLIGHT_RESULT, "prod-eu", check="reachable", ok=True, detail="ok"))
    state.apply(ev(Kind.PREFLIGHT_FINISHED, ok=True, failures=0))
    assert state.clusters["prod-eu"].phase is Phase.WAITING
    assert state.release is not None and state.release.preflight_ok

    state.apply(ev(Kind.WAVE_STARTED, wave=0, clusters=["staging"]))
    state.apply(ev(Kind.CLUSTER_STARTED, "staging", ts=150.0, from_version="v1", to_version="v2", wave=0))
    row = state.clusters["staging"]
    assert row.phase is Phase.ROLLING and row.live == "v1"
    state.apply(ev(Kind.CLUSTER_PROGRESS, "staging", ts=160.0, message="2 old pods terminating",
                   desired=3, updated=2, ready=1, available=1, phase="progressing"))
    assert (row.desired, row.updated, row.ready, row.available) == (3, 2, 1, 1)
    assert row.message == "2 old pods terminating"
    assert row.elapsed(state.now()) == 50.0
    state.apply(ev(Kind.CLUSTER_HEALTHY, "staging", ts=170.0, version="v2", duration=20.0))
    assert row.phase is Phase.HEALTHY and row.live == "v2"
    now[0] = 900.0
    assert row.elapsed(state.now()) == 20.0  # frozen once finished

    counts = state.counts()
    assert counts[Phase.HEALTHY] == 1 and counts[Phase.WAITING] == 1

    state.apply(ev(Kind.GATE_WAITING, wave=1, clusters=["prod-eu"]))
    assert state.release.gate_waiting
    state.apply(ev(Kind.GATE_DECIDED, decision="reject", by="alice", rollback=False))
    state.apply(ev(Kind.RELEASE_FINISHED, outcome="stopped", exit_code=3))
    assert state.clusters["prod-eu"].phase is Phase.SKIPPED
    assert state.release.outcome == "stopped" and state.release.finished == 100.0


def test_failure_then_automatic_rollback() -> None:
    state = FleetState(FLEET, clock=lambda: 0.0)
    planned(state, ["prod-us"])
    state.apply(ev(Kind.CLUSTER_STARTED, "prod-us", ts=10.0, from_version="v1", to_version="v2"))
    state.apply(ev(Kind.CLUSTER_FAILED, "prod-us", ts=20.0,
                   error="pod user-service-x: ImagePullBackOff", duration=10.0))
    row = state.clusters["prod-us"]
    assert row.phase is Phase.FAILED and "ImagePullBackOff" in row.error
    state.apply(ev(Kind.CLUSTER_ROLLING_BACK, "prod-us", ts=21.0, from_version="v2", to_version="v1"))
    assert row.phase is Phase.ROLLING_BACK and row.started == 10.0
    state.apply(ev(Kind.CLUSTER_ROLLED_BACK, "prod-us", ts=30.0, version="v1", ok=True))
    assert row.phase is Phase.ROLLED_BACK and row.live == "v1"
    assert any(line.bad and line.cluster == "prod-us" for line in state.log)
    kinds = [line.kind for line in state.timeline("prod-us")]
    assert kinds == [Kind.CLUSTER_STARTED, Kind.CLUSTER_FAILED, Kind.CLUSTER_ROLLING_BACK,
                     Kind.CLUSTER_ROLLED_BACK]


def test_a_failed_rollback_stays_failed_with_its_error() -> None:
    state = FleetState(FLEET)
    state.apply(ev(Kind.CLUSTER_ROLLING_BACK, "staging", from_version="v2", to_version="v1"))
    state.apply(ev(Kind.CLUSTER_ROLLED_BACK, "staging", ok=False, error="no previous revision"))
    row = state.clusters["staging"]
    assert row.phase is Phase.FAILED and "no previous revision" in row.message


def test_unreachable_cluster_and_status_reading() -> None:
    state = FleetState(FLEET)
    status = [
        SimpleNamespace(cluster="staging", version="v1", image="img:v1", revision=3, ready=2,
                        desired=2, reachable=True, error=None),
        SimpleNamespace(cluster="prod-us", version=None, image=None, revision=None, ready=0,
                        desired=0, reachable=False, error="connection refused\n(port 1)"),
    ]
    state.apply_status(status)
    assert state.clusters["staging"].live == "v1" and state.clusters["staging"].ready == 2
    assert state.clusters["prod-us"].phase is Phase.UNREACHABLE
    assert state.clusters["prod-us"].message == "connection refused (port 1)"
    status[1] = SimpleNamespace(cluster="prod-us", version="v1", image="img:v1", revision=1,
                                ready=6, desired=6, reachable=True, error=None)
    state.apply_status(status)
    assert state.clusters["prod-us"].phase is Phase.IDLE


def test_drift_is_live_differing_from_the_ledger() -> None:
    state = FleetState(FLEET)
    state.apply_status([SimpleNamespace(cluster="staging", version="v3", image="i", revision=1,
                                        ready=1, desired=1, reachable=True, error=None)])
    state.apply_recorded({"staging": "v2", "prod-eu": None})
    assert state.clusters["staging"].drift
    assert not state.clusters["prod-eu"].drift


def test_dirty_rows_are_reported_once() -> None:
    state = FleetState(FLEET)
    state.take_dirty()
    state.apply(ev(Kind.CLUSTER_PROGRESS, "prod-eu", desired=6, updated=1, ready=0, available=0))
    state.apply(ev(Kind.CLUSTER_PROGRESS, "prod-eu", desired=6, updated=2, ready=1, available=1))
    dirty, release_dirty, lines = state.take_dirty()
    assert dirty == {"prod-eu"} and not release_dirty
    assert lines == []  # progress goes to the row and the cluster timeline, not the log
    assert state.take_dirty() == (set(), False, [])


def test_marks_and_filters() -> None:
    state = FleetState(FLEET)
    assert state.toggle_mark("prod-us") is True
    state.toggle_mark("staging")
    assert state.marked() == ["staging", "prod-us"]
    state.clear_marks()
    assert state.marked() == []
    assert state.visible("prod-eu*") == ["prod-eu-10pct", "prod-eu"]
    assert state.visible("canary") == ["prod-eu-10pct"]
    assert state.visible("eu !prod-eu") == ["staging", "prod-eu-10pct"]
    assert state.visible("us") == ["prod-us"]
    assert state.visible("") == state.ids
    assert matches(FLEET[0], "STAG")


def test_preflight_failure_returns_rows_to_idle_with_the_reason() -> None:
    state = FleetState(FLEET)
    planned(state, ["staging", "prod-us"])
    state.apply(ev(Kind.PREFLIGHT_STARTED, checks=["reachable", "image"]))
    state.apply(ev(Kind.PREFLIGHT_RESULT, "prod-us", check="reachable", ok=False,
                   detail="connection refused"))
    state.apply(ev(Kind.PREFLIGHT_FINISHED, ok=False, failures=1))
    state.apply(ev(Kind.RELEASE_FINISHED, outcome="preflight_failed", exit_code=2))
    row = state.clusters["prod-us"]
    assert row.phase is Phase.IDLE and "connection refused" in row.message
    assert state.release is not None and state.release.preflight_ok is False


def test_format_duration() -> None:
    assert format_duration(None) == "-"
    assert format_duration(41.9) == "0:41"
    assert format_duration(3725) == "1:02:05"


def test_a_cluster_lost_mid_rollout_stays_unreachable() -> None:
    state = FleetState(FLEET)
    planned(state, ["prod-us"])
    state.apply(ev(Kind.CLUSTER_STARTED, "prod-us", from_version="v1", to_version="v2"))
    state.apply(ev(Kind.CLUSTER_UNREACHABLE, "prod-us", error="connection refused"))
    state.apply(ev(Kind.CLUSTER_FAILED, "prod-us", error="connection refused", duration=1.0))
    row = state.clusters["prod-us"]
    assert row.phase is Phase.UNREACHABLE
    state.apply(ev(Kind.CLUSTER_ROLLING_BACK, "prod-us", from_version="v2", to_version="v1"))
    state.apply(ev(Kind.CLUSTER_ROLLED_BACK, "prod-us", ok=False, error="connection refused"))
    assert row.phase is Phase.UNREACHABLE
    assert row.message == "rollback failed: connection refused"


def test_a_baking_wave_has_a_countdown_until_it_baked() -> None:
    state = FleetState(FLEET, clock=lambda: 200.0)
    planned(state, ["staging", "prod-eu"], [["staging"], ["prod-eu"]])
    state.apply(ev(Kind.WAVE_BAKING, wave=0, seconds=20.0, until=215.0, clusters=["staging"]))
    assert state.release is not None
    assert (state.release.bake_wave, state.release.bake_until) == (0, 215.0)
    assert format_duration(state.release.bake_until - state.now()) == format_duration(15.0)
    row = state.clusters["staging"]
    row.phase = Phase.HEALTHY       # the grid's NOTE counts down for each baking cluster
    assert row.note(state.now()) == "baking · 0:15 left"
    assert state.release.gate_after(0) is False   # no gates in this plan
    state.apply(ev(Kind.WAVE_BAKED, wave=0, ok=True, failed=[], seconds=20.0, completed=True))
    assert (state.release.bake_wave, state.release.bake_until) == (None, None)
    assert row.bake_until is None and row.note(state.now()) == row.message


def test_a_cluster_held_by_pacing_says_so_until_it_starts() -> None:
    state = FleetState(FLEET, clock=lambda: 200.0)
    planned(state, ["staging", "prod-eu"])
    state.apply(ev(Kind.CLUSTER_PACED, "prod-eu", wave=0, until=210.0, max_starts=1,
                   window=10.0))
    row = state.clusters["prod-eu"]
    assert row.phase is Phase.WAITING and row.message.startswith("paced: at most 1 starts")
    state.apply(ev(Kind.CLUSTER_STARTED, "prod-eu", from_version="v1", to_version="v2", wave=0))
    assert row.phase is Phase.ROLLING and row.message == ""
