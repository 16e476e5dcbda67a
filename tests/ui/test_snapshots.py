"""Snapshots of the console's screens (pytest-textual-snapshot), made reproducible.

The app runs on the local fleet with a frozen clock (`fixed_clock`), UTC, no animations
and no blinking cursors; what changes from run to run in a real release (release ids,
times) is fed as fixed `Event`s, so each screen shows the same frame every time. Update
after an intended change with `pytest tests/ui/test_snapshots.py --snapshot-update` and
look at the SVGs under `tests/ui/__snapshots__/`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from textual.widgets import Input

from console.engine import Engine, GateRequest, ClusterResult, ReleaseRequest, GateAnswer, \
    GateDecision
from console.events import Event, Kind
from console.history import Ledger
from console.ui.app import ReleaseConsoleApp
from console.ui.screens.detail import DetailScreen
from console.ui.screens.gate import GateScreen
from console.ui.screens.history import HistoryScreen
from console.ui.screens.release_form import ReleaseFormScreen

from .ui_helpers import repainted, wait_for

SIZE = (120, 36)
# A busy test machine must not turn a slow answer into an "unreachable" row.
PATIENT = {"status_timeout": 20.0}
RID = "r-20261125-1358-ab12"
T0 = 1764079100.0  # 13:58:20 UTC; the fixed clock says 14:02:11
WAVES = [{"index": 0, "clusters": ["staging"], "gate_before": False},
         {"index": 1, "clusters": ["prod-eu-10pct"], "gate_before": True},
         {"index": 2, "clusters": ["prod-eu", "prod-us"], "gate_before": True}]


def ev(kind: Kind, at: float, cluster: str | None = None, message: str = "", **data) -> Event:
    return Event(kind, RID, cluster, message, data, ts=T0 + at)


def canary_until_wave_3() -> list[Event]:
    """A canary release of v1.4.2: two waves healthy, the third rolling."""
    events = [
        ev(Kind.RELEASE_PLANNED, 0, message="release user-service v1.4.2 to 4 cluster(s), canary",
           app="user-service", version="v1.4.2", strategy="canary",
           targets=["staging", "prod-eu-10pct", "prod-eu", "prod-us"], waves=WAVES,
           operator="alice"),
        ev(Kind.PREFLIGHT_STARTED, 1, checks=["cluster"]),
        ev(Kind.PREFLIGHT_FINISHED, 3, message="pre-flight passed", ok=True, failures=[]),
        ev(Kind.RELEASE_STARTED, 3, message=f"release {RID} started"),
        ev(Kind.WAVE_STARTED, 3, message="wave 1 of 3: staging", wave=0, clusters=["staging"]),
        ev(Kind.CLUSTER_STARTED, 4, "staging", "v1.4.1 -> v1.4.2", from_version="v1.4.1",
           to_version="v1.4.2", wave=0),
        ev(Kind.CLUSTER_HEALTHY, 45, "staging", "healthy at v1.4.2 in 41.0s", version="v1.4.2",
           duration=41.0),
        ev(Kind.GATE_WAITING, 46, message="waiting for approval to start wave 2: prod-eu-10pct",
           wave=1, clusters=["prod-eu-10pct"]),
        ev(Kind.GATE_DECIDED, 60, message="gate approve by alice", decision="approve",
           by="alice", rollback=False, wave=1),
        ev(Kind.WAVE_STARTED, 60, message="wave 2 of 3: prod-eu-10pct", wave=1,
           clusters=["prod-eu-10pct"]),
        ev(Kind.CLUSTER_STARTED, 61, "prod-eu-10pct", "v1.4.1 -> v1.4.2",
           from_version="v1.4.1", to_version="v1.4.2", wave=1),
        ev(Kind.CLUSTER_HEALTHY, 113, "prod-eu-10pct", "healthy at v1.4.2 in 52.0s",
           version="v1.4.2", duration=52.0),
        ev(Kind.GATE_WAITING, 114, message="waiting for approval to start wave 3",
           wave=2, clusters=["prod-eu", "prod-us"]),
        ev(Kind.GATE_DECIDED, 150, message="gate approve by alice", decision="approve",
           by="alice", rollback=False, wave=2),
        ev(Kind.WAVE_STARTED, 150, message="wave 3 of 3: prod-eu, prod-us", wave=2,
           clusters=["prod-eu", "prod-us"]),
        ev(Kind.CLUSTER_STARTED, 151, "prod-eu", "v1.4.1 -> v1.4.2", from_version="v1.4.1",
           to_version="v1.4.2", wave=2),
        ev(Kind.CLUSTER_STARTED, 151, "prod-us", "v1.4.1 -> v1.4.2", from_version="v1.4.1",
           to_version="v1.4.2", wave=2),
        ev(Kind.CLUSTER_PROGRESS, 200, "prod-eu", "2 old replicas are pending termination",
           desired=2, updated=2, ready=1, available=1, phase="progressing"),
        ev(Kind.CLUSTER_PROGRESS, 205, "prod-us", "pod user-service-x: ImagePullBackOff",
           desired=2, updated=1, ready=0, available=0, phase="progressing"),
        ev(Kind.CLUSTER_FAILED, 215, "prod-us", "pods failing for over 10s: ImagePullBackOff",
           error="pods failing for over 10s: user-service-7c9f-x2x9q ImagePullBackOff "
                 "(Back-off pulling image \"registry/apps/user-service:v1.4.2\")",
           duration=64.0),
        ev(Kind.CLUSTER_ROLLING_BACK, 216, "prod-us", "automatic rollback: v1.4.2 -> v1.4.1",
           from_version="v1.4.2", to_version="v1.4.1"),
        ev(Kind.CLUSTER_ROLLED_BACK, 225, "prod-us", "rolled back to v1.4.1", version="v1.4.1",
           ok=True, error=None),
    ]
    return events


def seed(config, tag: str) -> None:
    """Release `tag` everywhere, headless, so the clusters have a live version."""
    engine = Engine(config)
    result = engine.run(ReleaseRequest(tag=tag, strategy="parallel"),
                        lambda _gate: GateAnswer(GateDecision.APPROVE))
    engine.close()
    assert result.outcome == "ok", (result.message, result.preflight and
                                    result.preflight.failures)


def make_app(console_fleet, fixed_clock, seed_tag: str | None = "v1.4.1"):
    config, fleet = console_fleet()
    if seed_tag:
        seed(config, seed_tag)
    return ReleaseConsoleApp(config, clock=fixed_clock, status_interval=0, operator="alice",
                             engine_options=PATIENT), config, fleet


async def settle(pilot, events: list[Event] = ()) -> None:
    """Engine built, first reading applied, then the events, then a repaint."""
    app = pilot.app
    await wait_for(pilot, app._engine_ready.is_set, what="the engine")
    await app.workers.wait_for_complete()
    for event in events:
        app.bridge(event)
    await repainted(pilot)


def no_blink(app) -> None:
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


def test_fleet_grid_during_a_canary_release(snap_compare, console_fleet, fixed_clock) -> None:
    app, _config, _fleet = make_app(console_fleet, fixed_clock)

    async def run_before(pilot) -> None:
        await settle(pilot, canary_until_wave_3())
        app.fleet.grid.go_to("prod-eu")
        app.fleet.grid.action_toggle_mark()
        await repainted(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_release_form_with_plan(snap_compare, console_fleet, fixed_clock) -> None:
    app, _config, _fleet = make_app(console_fleet, fixed_clock)

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
        no_blink(app)
        await pilot.click("#strategy-canary")
        await pilot.click("#tag")
        await pilot.press(*"v1.4.2")
        await pilot.click("#targets")
        await pilot.press(*"!prod-us")
        await wait_for(pilot, lambda: app.screen.query_one("#plan").row_count == 3,
                       what="the plan without prod-us")
        await repainted(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_gate_modal_between_waves(snap_compare, console_fleet, fixed_clock) -> None:
    app, _config, _fleet = make_app(console_fleet, fixed_clock)
    events = canary_until_wave_3()[:13]  # up to the second gate
    request = GateRequest(RID, finished_wave=1, results=(
        ClusterResult("staging", "healthy", "v1.4.1", "v1.4.2", 41.0),
        ClusterResult("prod-eu-10pct", "healthy", "v1.4.1", "v1.4.2", 52.0)),
        next_clusters=("prod-eu", "prod-us"))

    async def run_before(pilot) -> None:
        await settle(pilot, events)
        app.push_screen(GateScreen(request, app.state, "alice"))
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="the gate")
        await repainted(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_cluster_detail_after_a_failed_rollout(snap_compare, console_fleet, fixed_clock) -> None:
    # Nothing deployed: no pods, revisions or cluster events whose names and times
    # would change per run; the timeline and the error come from the fed events.
    app, _config, _fleet = make_app(console_fleet, fixed_clock, seed_tag=None)

    async def run_before(pilot) -> None:
        await settle(pilot, canary_until_wave_3())
        app.open_detail("prod-us")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen)
                       and app.screen.detail is not None, what="the detail")
        await repainted(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def write_ledger(config, lines: list[dict]) -> None:
    """A ledger holding exactly `lines` (fixed times), committed."""
    Ledger.for_config(config).close()  # creates the repository and its layout
    path = Path(config.app.history.path)
    with open(path / "history" / "user-service.jsonl", "a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True, timeout=30)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=test", "-c",
                    "user.email=test@example.com", "commit", "-q", "-m", "fixture"],
                   check=True, timeout=30)


def ledger_lines() -> list[dict]:
    """Two releases (one ok, one with a rollback) and a manual rollback."""
    def release(rid, version, start, targets, strategy="canary", kind="release"):
        return {"type": "release", "v": 1, "id": rid, "app": "user-service", "kind": kind,
                "version": version, "image": f"registry/apps/user-service:{version}",
                "strategy": strategy, "targets": targets, "operator": "alice",
                "operator_email": "alice@example.com", "start": start}

    def cluster(rid, cid, outcome, frm, to, version, ts, error="", back=None):
        return {"type": "cluster", "release": rid, "cluster": cid, "outcome": outcome,
                "from_version": frm, "to_version": to, "version": version,
                "good": outcome == "healthy", "duration": 41.0, "error": error,
                "rolled_back_to": back, "operator": "alice", "ts": ts}

    def end(rid, outcome, code, at):
        return {"type": "end", "release": rid, "outcome": outcome, "exit_code": code, "end": at}

    ids = ["staging", "prod-eu-10pct", "prod-eu", "prod-us"]
    a, b = "r-20261124-0910-aa01", "r-20261125-1358-ab12"
    lines = [release(a, "v1.4.1", "2026-11-24T09:10:02Z", ids)]
    lines += [cluster(a, c, "healthy", "v1.4.0", "v1.4.1", "v1.4.1", "2026-11-24T09:14:00Z")
              for c in ids]
    lines.append(end(a, "ok", 0, "2026-11-24T09:15:30Z"))
    lines.append(release(b, "v1.4.2", "2026-11-25T13:58:20Z", ids))
    lines += [cluster(b, c, "healthy", "v1.4.1", "v1.4.2", "v1.4.2", "2026-11-25T14:01:00Z")
              for c in ids[:3]]
    lines.append(cluster(b, "prod-us", "rolled_back", "v1.4.1", "v1.4.2", "v1.4.1",
                         "2026-11-25T14:02:05Z", error="pods failing for over 10s: "
                         "ImagePullBackOff", back="v1.4.1"))
    lines.append(end(b, "failed", 1, "2026-11-25T14:02:06Z"))
    return lines


def history_app(console_fleet, fixed_clock) -> ReleaseConsoleApp:
    """The console on a fleet with the recorded ledger above, v1.4.2 everywhere and prod-eu
    changed by hand to a hotfix (the matrix must mark the drift)."""
    config, _fleet = console_fleet()
    write_ledger(config, ledger_lines())
    seed(config, "v1.4.2")
    engine = Engine(config)
    engine.run(ReleaseRequest(tag="v1.4.2-hotfix", clusters="prod-eu", strategy="serial"),
               lambda _gate: GateAnswer(GateDecision.APPROVE))
    engine.close()
    return ReleaseConsoleApp(config, clock=fixed_clock, status_interval=0, operator="alice",
                             engine_options=PATIENT)


async def open_history(pilot) -> None:
    """`h`, and wait until the ledger is read."""
    app = pilot.app
    await settle(pilot)
    await pilot.press("h")
    await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen)
                   and bool(app.screen.releases), what="the ledger")
    await app.workers.wait_for_complete()


def test_history_ledger_and_version_matrix(snap_compare, console_fleet, fixed_clock) -> None:
    app = history_app(console_fleet, fixed_clock)

    async def run_before(pilot) -> None:
        await open_history(pilot)
        no_blink(app)
        await repainted(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_history_version_matrix_tab(snap_compare, console_fleet, fixed_clock) -> None:
    app = history_app(console_fleet, fixed_clock)

    async def run_before(pilot) -> None:
        await open_history(pilot)
        await pilot.press("v")
        await wait_for(pilot, lambda: app.screen.query_one("#history-tabs").active
                       == "tab-matrix", what="the matrix tab")
        await repainted(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
