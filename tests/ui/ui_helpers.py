"""Helpers shared by the console's tests (imported as `ui_helpers`)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any


def story(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (no async pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def wait_for(pilot: Any, predicate: Callable[[], bool], timeout: float = 30.0,
                   what: str | Callable[[], str] = "condition") -> None:
    """Let the app run until `predicate()` holds; fail naming `what` (or what it returns,
    read at the failure) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {said}")
        await pilot.pause(0.05)


async def repainted(pilot: Any, timeout: float = 30.0) -> None:
    """Let the console draw what it knows: no engine events waiting in the bridge, no
    change in the state the 10 Hz repaint has not taken, the (throttled) release header
    drawn, then one more message cycle."""
    app = pilot.app
    await wait_for(pilot, lambda: not app.bridge.pending and not app.state.pending_repaint
                   and not app.fleet.repaint_pending, timeout, what="the repaint")
    await pilot.pause()
