"""Freeze windows through the CLI on the simulator: a frozen cluster refuses a release
(exit 2, naming the window and the clusters), `--override-freeze --reason` lets it
through and leaves who and why in the ledger and the notification, rollbacks are always
allowed, and a window opening mid-release stops new starts (exit 3).

"Now" is pinned: windows are placed around the real time, or `console.freeze.utc_now`
is replaced by a clock that reads the simulated fleet - no sleeps."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from console import freeze
from console.cli import main
from console.config import load
from console.engine import Engine, ReleaseRequest
from console.events import Kind, Outcome
from tests.engine.conftest import Recorder, approve
from tests.history.conftest import webhook  # noqa: F401 - the local webhook receiver

GROUPS = {"a": ["staging"], "b": ["prod"], "c": ["prod"]}


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_windows(path: Path, windows: list[dict], **app: object) -> None:
    """Add `freeze:` windows (and app settings) to a rewritten fleet file."""
    doc = yaml.safe_load(path.read_text())
    doc["freeze"] = windows
    doc["app"].update(app)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def around_now(name: str = "change-freeze", groups: list[str] | None = None) -> dict:
    now = datetime.now(timezone.utc)
    window = {"name": name, "from": stamp(now - timedelta(hours=1)),
              "to": stamp(now + timedelta(hours=1)), "reason": "quarter-end audit"}
    if groups is not None:
        window["groups"] = groups
    return window


def history_json(config: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["history", "--config", str(config), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_a_frozen_group_refuses_the_release_naming_window_and_clusters(world, capsys):
    w = world(["a", "b", "c"], groups=GROUPS)
    w.deploy_everywhere("v1")
    with_windows(w.config_path, [around_now(groups=["prod"])])
    capsys.readouterr()

    code = main(["deploy", "--config", str(w.config_path), "--tag", "v2",
                 "--strategy", "parallel"])

    captured = capsys.readouterr()
    assert code == 2
    assert "freeze window 'change-freeze'" in captured.out
    assert "covers b, c" in captured.out and "quarter-end audit" in captured.out
    assert "--override-freeze" in captured.err   # the pre-flight table says how
    assert [w.version(c) for c in "abc"] == ["v1", "v1", "v1"]    # nothing touched
    assert all(r["version"] != "v2" for r in history_json(w.config_path, capsys))
    # `check` runs the same pre-flight: the freeze row fails it.
    assert main(["check", "--config", str(w.config_path), "--tag", "v2"]) == 2
    assert "freeze window 'change-freeze'" in capsys.readouterr().out


def test_override_goes_through_and_is_in_the_ledger_and_the_notification(
        world, capsys, webhook, monkeypatch):  # noqa: F811 - the fixture
    monkeypatch.setenv("BUILD_USER_ID", "carol")   # who gives the override (CI's user)
    w = world(["a", "b"], groups={"a": ["staging"], "b": ["prod"]})
    w.deploy_everywhere("v1")
    with_windows(w.config_path, [around_now()],
                 notify={"on": ["success"], "slack_webhook": webhook.url})

    code = main(["deploy", "--config", str(w.config_path), "--tag", "v2", "--strategy",
                 "parallel", "--override-freeze", "--reason", "hotfix for\nINC-4711"])

    assert code == 0, capsys.readouterr()
    assert [w.version(c) for c in "ab"] == ["v2", "v2"]
    [release] = [r for r in history_json(w.config_path, capsys) if r["version"] == "v2"]
    override = release["freeze_override"]
    assert override["reason"] == "hotfix for INC-4711"
    # Who gave it: the name the cluster confirms for the credentials, and CI's user.
    assert override["by"] == "system:serviceaccount:kube-system:a-admin"
    assert override["confirmed"] is True and override["operator"] == "carol"
    [window] = override["windows"]
    assert window["name"] == "change-freeze" and window["clusters"] == ["a", "b"]
    assert main(["history", "--config", str(w.config_path)]) == 0
    assert "v2 [freeze override]" in capsys.readouterr().out
    # The override is told at the start although `notify.on` has no such event, and the
    # success note carries it too.
    told, success = webhook.bodies
    line = ("freeze override by system:serviceaccount:kube-system:a-admin (operator carol): "
            "hotfix for INC-4711 (windows: change-freeze)")
    assert "released through a freeze window" in told["text"] and told["event"] == \
        "freeze_override"
    assert told["freeze_override"] == line
    assert success["event"] == "success" and line in success["text"]


def test_override_needs_a_reason_and_a_reason_needs_the_override(world, capsys):
    w = world(["a"])
    with_windows(w.config_path, [around_now()])
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v2",
                 "--override-freeze"]) == 2
    assert "--override-freeze needs --reason" in capsys.readouterr().err
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v2",
                 "--reason", "x"]) == 2
    assert "--reason goes with --override-freeze" in capsys.readouterr().err
    assert w.version("a") is None


def test_a_window_elsewhere_or_later_does_not_refuse(world, capsys):
    w = world(["a", "b"], groups={"a": ["staging"], "b": ["staging"]})
    later = datetime.now(timezone.utc) + timedelta(days=2)
    with_windows(w.config_path, [
        around_now(groups=["staging"]) | {"name": "other", "groups": ["staging"]},
        {"name": "later", "from": stamp(later), "to": stamp(later + timedelta(hours=1)),
         "reason": "r"}])
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1",
                 "--clusters", "a", "--override-freeze", "--reason", "x"])
    assert code == 0
    with_windows(w.config_path, [{"name": "later", "from": stamp(later),
                                  "to": stamp(later + timedelta(hours=1)), "reason": "r"}])
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v1",
                 "--clusters", "b"]) == 0
    assert [w.version(c) for c in "ab"] == ["v1", "v1"]


def test_rollbacks_are_always_allowed_in_a_freeze(world, capsys):
    w = world(["a"])
    w.deploy_everywhere("v1")
    w.deploy_everywhere("v2")
    with_windows(w.config_path, [around_now()])
    assert main(["rollback", "a", "--to", "v1", "--yes", "--config", str(w.config_path)]) == 0
    assert w.version("a") == "v1"


def test_a_window_opening_mid_release_stops_new_starts(world, capsys, monkeypatch):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    opens = datetime(2026, 12, 24, 18, 0, tzinfo=timezone.utc)
    with_windows(w.config_path, [{"name": "holidays", "from": stamp(opens),
                                  "to": stamp(opens + timedelta(days=3)),
                                  "reason": "holidays"}])

    # The clock: before the window until cluster a runs v2, then inside it - the window
    # opens between a's rollout and b's start, whatever the machine's speed.
    def now() -> datetime:
        return opens + (timedelta(minutes=1) if w.version("a") == "v2"
                        else -timedelta(minutes=1))

    monkeypatch.setattr(freeze, "utc_now", now)
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v2", "--json"])

    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 3
    assert [w.version(c) for c in "abc"] == ["v2", "v1", "v1"]
    [end] = [e for e in out if e["kind"] == "release_finished"]
    assert end["outcome"] == "stopped" and end["exit_code"] == 3
    assert "freeze window 'holidays'" in end["detail"]
    skipped = {e["cluster"]: e["reason"] for e in out if e["kind"] == "cluster_skipped"}
    assert set(skipped) == {"b", "c"} and "opened during the release" in skipped["b"]
    [release] = [r for r in history_json(w.config_path, capsys) if r["version"] == "v2"]
    assert release["outcome"] == "stopped"


def test_running_rollouts_finish_when_a_window_opens(world):
    w = world(["a", "b", "c"], readiness_delay=0.5)
    w.deploy_everywhere("v1")
    path = w.config_path
    opens = datetime(2026, 12, 24, 18, 0, tzinfo=timezone.utc)
    with_windows(path, [{"name": "holidays", "from": stamp(opens),
                         "to": stamp(opens + timedelta(days=3)), "reason": "holidays"}])
    recorder = Recorder()
    clock = {"now": opens - timedelta(minutes=1)}

    def open_when_two_started(event) -> None:
        recorder(event)
        if len(recorder.of(Kind.CLUSTER_STARTED)) == 2:
            clock["now"] = opens    # a and b run; c is still waiting for a slot

    engine = Engine(load(path), [open_when_two_started], grace=0.5,
                    clock=lambda: clock["now"])
    try:
        result = engine.run(ReleaseRequest(tag="v2", strategy="parallel", max_parallel=2),
                            approve)
    finally:
        engine.close()
    outcomes = {r.cluster: r.outcome for r in result.clusters}
    assert outcomes == {"a": Outcome.HEALTHY, "b": Outcome.HEALTHY, "c": Outcome.SKIPPED}
    assert (result.outcome, result.exit_code) == (Outcome.STOPPED, 3)
    assert [w.version(c) for c in "abc"] == ["v2", "v2", "v1"]
