"""Waiting on a condition, never a fixed sleep: the one polling loop the tests share
(the TUI stories wait on the app's own loop instead: `tests/ui/ui_helpers.wait_for`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

EVERY = 0.05   # s between looks: fine enough for the stories, light on a loaded machine


def wait_for(condition: Callable[[], Any], what: str = "condition",
             timeout: float = 60.0) -> Any:
    """Poll `condition` until it returns something true, and return that; fail naming
    `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(EVERY)
