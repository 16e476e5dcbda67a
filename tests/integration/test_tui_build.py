"""The build from the console: the release form offers `app.build.command` for a tag whose
image is missing (a real docker-registry), streams the build's output, checks the image
again and then releases; a failed build shows its last lines and starts nothing."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from textual.widgets import RichLog, Static

from console.ui.app import ReleaseConsoleApp
from console.ui.screens.release_form import ReleaseFormScreen
from console.ui.widgets.build_pane import BuildPane
from tests.integration.conftest import built_by
from tests.ui.ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(180)

PUSH = textwrap.dedent("""\
    import os, sys
    sys.path.insert(0, {repo!r})
    from tests.registry.conftest import Registry
    print("step 1/2: building", os.environ["RELEASE_IMAGE"], flush=True)
    Registry(host={host!r}, process=None).push_image("apps/user-service",
                                                     os.environ["RELEASE_TAG"])
    print("step 2/2: pushed", flush=True)
    """)
FAIL = textwrap.dedent("""\
    import sys
    for n in range(1, 31):
        print(f"compiling module {{n}}", flush=True)
    print("error: the compiler gave up", flush=True)
    sys.exit(3)
    """)


async def start_tag(pilot, app, tag: str) -> ReleaseFormScreen:
    await wait_for(pilot, app._engine_ready.is_set, what="the engine")
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, ReleaseFormScreen), what="the form")
    await pilot.click("#tag")
    await pilot.press(*tag)
    form = app.screen
    assert form.problem is None, form.problem
    await pilot.press("enter")
    return form


@asynccontextmanager
async def offered_build(w, registry, tmp_path, script: str, tag: str
                        ) -> AsyncIterator[tuple[ReleaseConsoleApp, Any, ReleaseFormScreen]]:
    """The console on `w` with `app.build.command` running `script`, `tag` started from
    the release form and the build offered (the image is missing); (app, pilot, form)."""
    config = built_by(w, registry, tmp_path, script).config
    app = ReleaseConsoleApp(config, status_interval=0, engine_options={"grace": 1.0})
    async with app.run_test(size=(120, 48)) as pilot:
        form = await start_tag(pilot, app, tag)
        await wait_for(pilot, lambda: form.build_offer is not None, what="the build offer")
        yield app, pilot, form


def log_text(form: ReleaseFormScreen) -> str:
    return "\n".join(line.text for line in form.query_one("#build-log", RichLog).lines)


def status_text(form: ReleaseFormScreen) -> str:
    return str(form.query_one("#build-status", Static).content)


@story
async def test_a_missing_image_is_built_from_the_form_then_released(world, registry,
                                                                     tmp_path) -> None:
    w = world(["a"])
    # The registry says the image is missing: the build is offered, nothing started.
    async with offered_build(w, registry, tmp_path, PUSH, "v7") as (app, pilot, form):
        assert "is not in the registry" in status_text(form)
        assert not form.started and not app.release_running
        # Held before the click: once the image is there the release starts and the form
        # may close before a look at the pane, taking `#build-log` out of the DOM.
        pane = form.query_one("#build-log", RichLog)
        await pilot.click("#build-run")
        shown = lambda: "\n".join(line.text for line in pane.lines)  # noqa: E731
        await wait_for(pilot, lambda: "step 2/2: pushed" in shown(), what="the output")
        assert f"step 1/2: building {registry.host}/apps/user-service:v7" in shown()
        await wait_for(pilot, lambda: app.state.release is not None
                       and app.state.release.outcome is not None, timeout=90,
                       what="the release's end")
        assert app.state.release.outcome == "ok"
    assert w.version("a") == "v7"


@story
async def test_a_failed_build_shows_its_last_lines_and_starts_nothing(world, registry,
                                                                      tmp_path) -> None:
    w = world(["a"])
    async with offered_build(w, registry, tmp_path, FAIL, "v8") as (app, pilot, form):
        await pilot.click("#build-run")
        await wait_for(pilot, lambda: "build failed" in status_text(form), what="the failure")
        status = status_text(form)
        assert "exit" in status and "nothing was released" in status, status
        text = log_text(form)
        assert "── last lines ──" in text
        assert text.rstrip().endswith("error: the compiler gave up")
        assert not form.started and not app.release_running
        assert isinstance(app.screen, ReleaseFormScreen)
        assert not form.query_one("#tag").disabled      # editable again
        assert form.query_one(BuildPane).has_class("shown")
    assert w.fleet.get("a", "/namespaces", "", "a") is None   # nothing touched
