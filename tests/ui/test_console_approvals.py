"""The console's own gate with `approvals: 2` (issue 15): the person's `a` counts as one
approval, recorded under the identity the cluster confirms (SelfSubjectReview) with the
local name beside it, and the release waits for a second, distinct approver through the
control channel (`release-console control ID approve` as a real process)."""

from __future__ import annotations

import pytest

from console.config import load
from console.ui.screens.gate import GateScreen
from console.ui.screens.release_form import ReleaseFormScreen

from .test_steer_keys import control
from .test_stories import console, ended, live_tag, released, seed, steering
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(180)


async def paused_and_resumed(pilot, app, fleet, held: str) -> str:
    """`p` pauses the console's release, then lets `held`'s pods get ready (held until
    the pause was taken), `p` resumes it; once it ended, `q`. Its id."""
    rid = app.state.release.release_id
    await pilot.press("p")
    await wait_for(pilot, lambda: app.state.release.paused, what="paused")
    fleet.set_faults(held, hold_ready=[])
    await pilot.press("p")
    await ended(pilot, app, 60)
    await pilot.press("q")
    return rid


def other_person(config, fleet, username: str):
    """A fleet file like `config`'s, with `username`'s own full-rights tokens: another
    person, as the cluster names them (a copy of the loaded config, for `control`)."""
    import yaml

    home = config.path.parent / username
    home.mkdir()
    text = config.path.read_text()
    for cid in config.ids:
        kubeconfig = config.path.parent / f"{cid}.yaml"
        assert str(kubeconfig) in text
        token = fleet.add_token(cid, None, username)
        (home / f"{cid}.yaml").write_text(yaml.safe_dump(fleet.kubeconfig(cid, token)))
        text = text.replace(str(kubeconfig), str(home / f"{cid}.yaml"))
    (home / "clusters.yaml").write_text(text)
    return load(home / "clusters.yaml")


def two_approvals(console_fleet):
    """The demo's three clusters, seeded at v1, with a canary whose gates need two."""
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    text = config.path.read_text()
    assert "    gates: true\n" in text
    config.path.write_text(text.replace("    gates: true\n", "    gates: true\n    approvals: 2\n"))
    config = load(config.path)
    seed(config, "v1")
    return config, fleet


async def canary_at_its_gate(pilot, app) -> str:
    """Start the canary to v2 from the form and wait for its gate question; its id."""
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
    await pilot.click("#strategy-canary")
    await pilot.click("#tag")
    await pilot.press("v", "2", "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, GateScreen)
                   and app.screen.request is not None, timeout=90, what="the gate question")
    return app.state.release.release_id


async def noticed(pilot, app, *words: str) -> None:
    """Wait until a notice says every one of `words`."""
    await wait_for(pilot, lambda: any(all(w in str(n.message) for w in words)
                                      for n in app._notifications),
                   what=lambda: f"a notice saying {words} (notices: "
                   f"{[str(n.message) for n in app._notifications]})")


async def bob_approves_and_it_ends(pilot, app, config, fleet, rid: str) -> list[str]:
    """A second person (their own token) approves through the channel; the release ends
    ok; `q`. The people its one recorded gate approval names."""
    code, out, err = await control(other_person(config, fleet, "bob"), rid, "approve")
    assert code == 0, err
    await ended(pilot, app, 90)
    assert app.state.release.outcome == "ok"
    await pilot.press("q")
    decided = [s["by"] for s in steering(config, rid) if s["action"] == "gate_approve"]
    assert len(decided) == 1, decided
    return decided[0].split(", ")


@story
async def test_the_consoles_a_is_one_of_two_approvals(console_fleet) -> None:
    config, fleet = two_approvals(console_fleet)
    async with console(config) as (app, pilot):
        rid = await canary_at_its_gate(pilot, app)
        await pilot.press("a")
        await wait_for(pilot, lambda: not isinstance(app.screen, GateScreen), what="a taken")
        # The question closed, but the gate still waits: the console says how far it is.
        await noticed(pilot, app, "1 of 2 approvals", f"control {rid} approve")
        # The same person through the channel does not count twice: the console's
        # identity is what the release's own cluster (prod-eu) confirms, as for control.
        code, out, err = await control(config, rid, "approve")
        assert code == 2 and "distinct approvers" in err, (code, out, err)
        people = await bob_approves_and_it_ends(pilot, app, config, fleet, rid)
    assert [live_tag(fleet, c) for c in ("staging", "prod-eu", "prod-us")] == ["v2"] * 3
    # Both: the console's person as the release's cluster names them (local name beside
    # it), and the second person through the control channel.
    assert len(people) == 2, people
    assert people[0].startswith("system:serviceaccount:kube-system:prod-eu-admin (")
    assert "bob" in people[1] and "admin" not in people[1], people


@story
async def test_the_consoles_own_pause_records_the_identity_the_cluster_confirms(
        console_fleet) -> None:
    from .test_steer_keys import staging_rolling
    async with staging_rolling(console_fleet) as (config, fleet, app, pilot):
        rid = await paused_and_resumed(pilot, app, fleet, "staging")
    steer = steering(config, rid)
    by = {s["action"]: s["by"] for s in steer}
    # The cluster's name for the fleet file's credentials, the local name beside it.
    assert "paused" in by, steer
    assert by["paused"].startswith("system:serviceaccount:kube-system:") and \
        by["paused"].endswith(f"({app.operator})"), by
    assert by["resumed"] == by["paused"]


@story
async def test_the_consoles_identity_comes_from_the_releases_own_cluster(console_fleet) -> None:
    # The fleet's first cluster (staging) is no target of this release: the person is
    # named by the cluster the release's channel lives on - prod-eu, the first of its
    # targets in sorted order, where `release-console control` asks too - not staging.
    from console.ui.state import Phase

    from .test_stories import open_form_and_start
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    assert config.ids[0] == "staging"
    seed(config, "v1")
    fleet.set_faults("prod-eu", hold_ready=["v2"])   # rolling until the pause was taken
    async with console(config) as (app, pilot):
        await open_form_and_start(pilot, app, "serial", "v2", targets="prod")
        await wait_for(pilot, lambda: app.state.clusters["prod-eu"].phase is Phase.ROLLING,
                       what="the first target rolling")
        rid = await paused_and_resumed(pilot, app, fleet, "prod-eu")
    assert live_tag(fleet, "staging") == "v1"
    by = {s["action"]: s["by"] for s in steering(config, rid)}
    assert by.get("paused") == f"system:serviceaccount:kube-system:prod-eu-admin ({app.operator})", by
    assert by.get("resumed") == by["paused"]


@story
async def test_an_approval_the_cluster_cannot_confirm_is_not_one_of_two(console_fleet) -> None:
    # The release's own cluster (prod-eu: its channel) has no SelfSubjectReview, so the
    # console can only offer its local name. That `a` must not count: the same person's
    # confirmed `control approve` (once the cluster answers) would otherwise be the
    # second of two "distinct" approvers and open the gate alone.
    config, fleet = two_approvals(console_fleet)
    fleet.set_faults("prod-eu", self_review=False)
    async with console(config) as (app, pilot):
        rid = await canary_at_its_gate(pilot, app)
        await pilot.press("a")
        await noticed(pilot, app, "not counted", "0 of 2 approvals")
        # The cluster answers again: the same person, confirmed, is one approval; a
        # second person is the other.
        fleet.set_faults("prod-eu", self_review=True)
        code, out, err = await control(config, rid, "approve")
        assert code == 0 and "1 of 2" in out + err, (code, out, err)
        assert app.state.release.outcome is None     # still at its gate
        people = await bob_approves_and_it_ends(pilot, app, config, fleet, rid)
    assert len(people) == 2 and app.operator not in people, people


@story
async def test_a_local_name_equal_to_the_confirmed_one_is_one_of_two(console_fleet) -> None:
    # The person's local name is the very name the release's cluster confirms (an OIDC
    # user called as at their desk): the console's `a` is that confirmed person, one of
    # two - neither uncounted for looking unconfirmed, nor counted again via `control`.
    config, fleet = two_approvals(console_fleet)
    name = "system:serviceaccount:kube-system:prod-eu-admin"
    async with console(config, operator=name) as (app, pilot):
        rid = await canary_at_its_gate(pilot, app)
        await pilot.press("a")
        await noticed(pilot, app, "1 of 2 approvals")
        code, out, err = await control(config, rid, "approve")
        assert code == 2 and "distinct approvers" in err, (code, out, err)
        people = await bob_approves_and_it_ends(pilot, app, config, fleet, rid)
    assert len(people) == 2 and people[0] == name and "bob" in people[1], people
