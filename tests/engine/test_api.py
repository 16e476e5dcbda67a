"""The engine's API types: light to import, outcomes that read as the strings they were."""

from __future__ import annotations

import json
import subprocess
import sys

from console.engine import ClusterResult, Outcome, ReleaseResult


def test_importing_the_api_loads_no_kubernetes_client() -> None:
    code = ("import sys, console.engine.api\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'"
            " or m.startswith('console.kube')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_outcomes_keep_the_strings_the_ledger_and_json_always_had() -> None:
    result = ClusterResult("staging", "rolled_back")
    assert result.outcome is Outcome.ROLLED_BACK
    assert json.dumps({"outcome": result.outcome}) == '{"outcome": "rolled_back"}'
    assert f"{Outcome.PREFLIGHT_FAILED}" == "preflight_failed"
    assert ReleaseResult("r-1", "ok", 0, (result,)).outcome is Outcome.OK
    assert {o.value for o in Outcome} == {
        "healthy", "failed", "rolled_back", "skipped", "interrupted", "skipped_by_operator",
        "ok", "stopped", "aborted", "preflight_failed", "not_started"}


def test_a_control_tells_its_observers_enum_members_with_the_old_strings() -> None:
    from console.engine import ControlChange, ReleaseControl
    heard: list[tuple[object, str]] = []
    control = ReleaseControl()
    control.subscribe(lambda what, by: heard.append((what, by)))
    control.pause(by="ann")
    control.hold()
    control.resume(by="ann")
    control.abort(by="bob")
    assert [what for what, _by in heard] == [ControlChange.PAUSED, ControlChange.HOLDING,
                                             ControlChange.RESUMED, ControlChange.ABORTED]
    assert all(isinstance(what, ControlChange) for what, _by in heard)
    # str-valued: anything that wrote or compared the old strings sees the same bytes.
    assert [f"{what}" for what, _by in heard] == ["paused", "holding", "resumed", "aborted"]


def test_follow_phases_are_an_enum_that_serialises_as_before() -> None:
    from console.engine.api import FollowPhase
    from console.engine.follow import ClusterLine
    line = ClusterLine("eu", FollowPhase.ROLLING, "v2", 1, 3)
    assert line.text() == f"{'eu':<20} rolling 1/3  v2"
    assert json.dumps({"phase": line.phase}) == '{"phase": "rolling"}'
    assert {p.value for p in FollowPhase} == {"waiting", "rolling", "ready", "unreachable"}
