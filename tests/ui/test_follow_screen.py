"""The done-when story of following (issue 15 items 1 and 2): a headless canary release
started as its own process bakes its first wave (the countdown shown live, issue 14) and
stops at its gate; the console, in another process, shows it
live (`f`), approves the gate through the control channel (`a`), the release finishes,
and the ledger records who approved - the identity the cluster confirmed. The same for a
release run as three shards (issue 16): one release in the console, approved once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from textual.widgets import DataTable, Static

from console.ui.app import ReleaseConsoleApp
from console.ui.screens.confirm import ConfirmScreen
from console.ui.screens.follow import FollowScreen

from .test_stories import console, live_tag, seed, steering
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(180)

# v2 as a canary whose gates wait for `control ... approve` (the follow screen's `a`).
AT_GATES = ("--tag", "v2", "--strategy", "canary", "--wait-for-approval", "--json")


def header(app: ReleaseConsoleApp) -> str:
    return str(app.screen.query_one("#follow-header", Static).content)


async def follow(pilot, app: ReleaseConsoleApp, says: str, what: str) -> FollowScreen:
    """`f`, then wait (120 s at most) until the follow screen has read a release and its
    header says `says` (before the first reading it says "looking for a running
    release...": a wait for "running" ended there, with no release read, under load)."""
    await pilot.press("f")
    await wait_for(pilot, lambda: isinstance(app.screen, FollowScreen)
                   and app.screen.view is not None and says in header(app),
                   timeout=120, what=what)
    return app.screen


async def confirmed(pilot, app: ReleaseConsoleApp, key: str, answer: str, what: str) -> None:
    """`key`, which asks first (`what`), then `answer` (y or n) to the question."""
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what=what)
    await pilot.press(answer)


def screen_of(app: ReleaseConsoleApp) -> FollowScreen:
    screen = app.screen
    assert isinstance(screen, FollowScreen), screen
    return screen


def bake_left(text: str) -> int:
    """The seconds left a `wave N baking: m:ss left` line says."""
    found = re.search(r"baking: (\d+):(\d\d) left", text)
    assert found, text
    return int(found[1]) * 60 + int(found[2])


@contextmanager
def headless(config, cwd, *args: str, stdout: int = subprocess.DEVNULL
             ) -> Iterator[subprocess.Popen]:
    """`release-console deploy ARGS` on `config`'s fleet file as a process of its own
    (stderr kept; stdout with `stdout=subprocess.PIPE`), killed at the end of the block if
    it still runs."""
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(config.path)}
    deploy = subprocess.Popen([sys.executable, "-m", "console", "deploy", *args],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, env=env,
                              stdin=subprocess.DEVNULL, cwd=cwd)
    try:
        yield deploy
    finally:
        if deploy.poll() is None:
            deploy.kill()
        deploy.wait(timeout=30)


@story
async def test_the_console_follows_a_headless_canary_and_approves_its_gate(
        console_fleet, tmp_path) -> None:
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    with headless(config, tmp_path, "--tag", "v2", "--strategy", "canary",
                  "--wait-for-approval", "--json", "--bake", "15s") as deploy:
        async with console(config) as (app, pilot):
            await pilot.press("f")
            # Staging bakes first: the followed release's countdown ticks, its gate waits.
            await wait_for(pilot, lambda: isinstance(app.screen, FollowScreen)
                           and "wave 1 baking" in header(app), timeout=120,
                           what="the followed release's bake")
            assert "the gate before wave 2 opens after it" in header(app)
            # It ticks between readings too (every second, not only when a change
            # or REFRESH brings a new reading): a tick seen with no new reading shown.
            seen = {"reading": screen_of(app).shown_reading, "left": bake_left(header(app))}

            def ticked_between_readings() -> bool:
                if "baking" not in header(app):
                    raise AssertionError("the bake ended and its countdown never ticked "
                                         "between two readings")
                reading, left = screen_of(app).shown_reading, bake_left(header(app))
                if reading != seen["reading"]:
                    seen.update(reading=reading, left=left)
                    return False
                return left < seen["left"]

            await wait_for(pilot, ticked_between_readings, timeout=60,
                           what="the countdown to tick between readings")
            await wait_for(pilot, lambda: isinstance(app.screen, FollowScreen)
                           and "waits for approval" in header(app), timeout=120,
                           what="the followed release at its gate")
            assert "baking" not in header(app)
            screen = app.screen
            release_id = screen.view.release_id
            table = screen.query_one("#follow-clusters", DataTable)
            assert "healthy" in str(table.get_row("staging")[1])
            assert "waiting" in str(table.get_row("prod-eu")[1])
            assert deploy.poll() is None
            await confirmed(pilot, app, "a", "y", "approve to ask first")
            await wait_for(pilot, lambda: deploy.poll() is not None, timeout=120,
                           what="the headless release to finish")
            await wait_for(pilot, lambda: "ended ok" in header(app), timeout=60,
                           what="the console to show the end")
            await pilot.press("escape")
            await pilot.press("q")
    assert deploy.returncode == 0, deploy.stderr.read()
    assert [live_tag(fleet, c) for c in ("staging", "prod-eu", "prod-us")] == ["v2"] * 3
    approvals = [s for s in steering(config, release_id) if s["action"] == "gate_approve"]
    # The channel lives on the first cluster in sorted order; its admin token approved.
    assert [s["by"] for s in approvals] == ["system:serviceaccount:kube-system:prod-eu-admin"]


@story
async def test_the_console_follows_a_sharded_release_as_one_and_approves_it_once(
        console_fleet, tmp_path) -> None:
    # `deploy --shard K/3` as three processes: prod-eu is shard 1's, staging and prod-us
    # shard 2's, shard 3 has none (sha256 of the ids). Shard 1 waits for approval through
    # its control channel; the others take its answer from the shard board.
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    rid = "r-tui-shards"
    with ExitStack() as processes:
        shards = [processes.enter_context(headless(
            config, tmp_path, "--tag", "v2", "--strategy", "canary", "--json", "--shard",
            f"{k}/3", "--release-id", rid, *(["--wait-for-approval"] if k == 1 else [])))
            for k in (1, 2, 3)]
        async with console(config) as (app, pilot):
            screen = await follow(pilot, app, "waits for approval",
                                  "the sharded release at its gate")
            assert screen.view.release_id == rid
            table = screen.query_one("#follow-clusters", DataTable)
            # One release: every shard's clusters in one table.
            assert "healthy" in str(table.get_row("staging")[1])
            assert "waiting" in str(table.get_row("prod-eu")[1])
            assert "waiting" in str(table.get_row("prod-us")[1])
            await confirmed(pilot, app, "a", "y", "approve to ask first")
            await wait_for(pilot, lambda: all(s.poll() is not None for s in shards),
                           timeout=120, what="every shard to finish")
            # Ended once the last shard ended.
            await wait_for(pilot, lambda: "ended ok" in header(app), timeout=60,
                           what="the console to show the end")
            assert "healthy" in str(table.get_row("prod-us")[1])
            await pilot.press("escape")
            await pilot.press("q")
    assert [s.returncode for s in shards] == [0, 0, 0], [s.stderr.read() for s in shards]
    assert [live_tag(fleet, c) for c in ("staging", "prod-eu", "prod-us")] == ["v2"] * 3


@story
async def test_the_follow_screen_shows_a_pause_from_outside_well_under_a_second_later(
        console_fleet, tmp_path, monkeypatch) -> None:
    # The screen reads again when its watches see a change, not on a timer (REFRESH is
    # 10 s): the latency is from the release's own `paused` event (its `ts`) to the
    # header saying paused.
    import json
    import time

    from console.ui.screens import follow as follow_screen
    from tests.ui.test_steer_keys import control
    # No timer reading during the test: only the watches can bring the pause on screen.
    monkeypatch.setattr(follow_screen, "REFRESH", 600.0)
    ids = ["staging", "prod-eu", "prod-us"]
    # Every v2 pod stays not Ready (`hold_ready`) until the header said paused: the release
    # still runs when `control` asks and stays paused (its one running cluster held)
    # until the screen shows it. With rollouts of 4 s each the release could end before
    # a `control` slowed by a loaded machine asked ("no running release"), or just after
    # the pause was taken, so the header never said paused. The rollout timeout is well
    # beyond the hold, however long the console and `control` take to start.
    config, fleet = console_fleet(ids, rollout_timeout="10m")
    for cid in ids:
        fleet.set_faults(cid, hold_ready=["v2"])
    with headless(config, tmp_path, "--tag", "v2", "--strategy", "parallel", "--max-parallel",
                  "1", "--json", stdout=subprocess.PIPE) as deploy:
        async with console(config) as (app, pilot):
            screen = await follow(pilot, app, "running", "the followed release")
            rid = screen.view.release_id
            before, before_reading = screen.view, screen.shown_reading
            code, _out, err = await control(config, rid, "pause")
            assert code == 0, err
            await wait_for(pilot, lambda: "paused" in header(app), timeout=30,
                           what="the header to say paused")
            shown = time.time()
            # Readings overlap and may end out of order (seen under load: an older one
            # shown last put "running" back for up to 30 s). The reading from before the
            # pause, ending now, is not shown over the newer one.
            screen._loaded(before, None, before_reading)
            assert "paused" in header(app), header(app)
            for cid in ids:
                fleet.set_faults(cid, hold_ready=[])
            code, _out, err = await control(config, rid, "resume")
            assert code == 0, err
            await pilot.press("escape")
            await pilot.press("q")
        out, _err = deploy.communicate(timeout=120)
    assert deploy.returncode == 0
    paused = next(e for e in map(json.loads, out.splitlines()) if e["kind"] == "paused")
    latency = shown - paused["ts"]
    print(f"follow screen latency: pause {latency:.3f}s")
    # The printed figure is the measurement (about 0.5 s on a calm machine); the bound only
    # proves the watch, not the (here 600 s) timer, brought it - a bound near the figure
    # fails on a loaded CI machine, not on a defect.
    assert latency < 10.0


@story
async def test_the_follow_screen_skips_a_cluster_and_aborts_with_rollback(
        console_fleet, tmp_path) -> None:
    # Steering from the follow screen beyond approve and pause: `o` skips the selected
    # cluster, `a` asks before approving (declined here), `x` asks, then aborts the
    # release and rolls back what it reached - each through the control channel.
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    seed(config, "v1")
    with headless(config, tmp_path, *AT_GATES) as deploy:
        async with console(config) as (app, pilot):
            screen = await follow(pilot, app, "waits for approval",
                                  "the followed release at its gate")
            release_id = screen.view.release_id
            table = screen.query_one("#follow-clusters", DataTable)
            table.move_cursor(row=table.get_row_index("prod-us"))
            # The screen reads the release again whenever its watches see a change (a
            # lease renewal, the ledger): one such reading between choosing the cluster
            # and `o` put the cursor back on the first row - staging, ended - and the
            # skip was refused (the story's flake under load). Force one here.
            seen = screen.view
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: screen.view is not seen, what="a new reading")
            await pilot.pause()
            selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            assert selected == "prod-us", selected
            await pilot.press("o")
            await wait_for(pilot, lambda: any("skip prod-us" in str(n.message)
                                              for n in app._notifications),
                           timeout=60, what=lambda: "the skip acknowledged (notices: "
                           f"{[str(n.message) for n in app._notifications]})")
            await confirmed(pilot, app, "a", "n", "approve to ask first")
            await wait_for(pilot, lambda: app.screen is screen, what="back, not approved")
            await confirmed(pilot, app, "x", "y", "abort to ask first")
            await wait_for(pilot, lambda: deploy.poll() is not None, timeout=120,
                           what="the headless release to end")
            await pilot.press("escape")
            await pilot.press("q")
    assert deploy.returncode == 3, deploy.stderr.read()
    # Staging was reached and is back on v1; prod-eu and prod-us never moved.
    assert [live_tag(fleet, c) for c in ("staging", "prod-eu", "prod-us")] == ["v1"] * 3
    steer = steering(config, release_id)
    done = [(s["action"], s.get("cluster")) for s in steer if not s.get("refused")]
    assert ("skip", "prod-us") in done and ("abort", None) in done, done
    assert not any(a in ("gate_approve", "approve") for a, _ in done), done


@story
async def test_the_follow_screens_a_on_a_gate_of_two_approvals_says_one_of_two(
        console_fleet, tmp_path) -> None:
    # `approvals: 2`: the follow screen's `a` is acknowledged as one approval of two, the
    # notice and the header say so, and the gate stays shut; `s` then stops the release.
    from console.config import load
    config, fleet = console_fleet(["staging", "prod-eu", "prod-us"])
    config.path.write_text(config.path.read_text().replace(
        "    gates: true\n", "    gates: true\n    approvals: 2\n"))
    config = load(config.path)
    with headless(config, tmp_path, *AT_GATES) as deploy:
        async with console(config) as (app, pilot):
            screen = await follow(pilot, app, "waits for approval (0 of 2)",
                                  "the followed release at its gate of two approvals")
            await confirmed(pilot, app, "a", "y", "approve to ask first")
            await wait_for(pilot, lambda: any("1 of 2 approvals" in str(n.message)
                                              for n in app._notifications),
                           timeout=60, what=lambda: "the '1 of 2' notice (notices: "
                           f"{[str(n.message) for n in app._notifications]})")
            await wait_for(pilot, lambda: "waits for approval (1 of 2: system:" in header(app),
                           timeout=30, what="the header to count one approval")
            assert deploy.poll() is None   # the gate stays shut
            await pilot.press("s")
            await wait_for(pilot, lambda: deploy.poll() is not None, timeout=120,
                           what="the release to stop at its gate")
            assert app.screen is screen
            await pilot.press("escape")
            await pilot.press("q")
    assert deploy.returncode == 3, deploy.stderr.read()
    assert live_tag(fleet, "staging") == "v2"
    # The second wave never started: nothing was deployed there.
    assert [fleet.get(c, "apps/deployments", c, "user-service")
            for c in ("prod-eu", "prod-us")] == [None, None]
