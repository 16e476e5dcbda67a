"""Fixtures of the integration tests: the engine tests' `world` (a started simulated
fleet, its rewritten clusters.yaml, helpers reading what the clusters really run) and
the registry tests' `registry` (a real docker-registry on 127.0.0.1)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.engine.conftest import REPO, World, approve, world  # noqa: F401 - fixtures re-exported
from tests.registry.conftest import registry  # noqa: F401 - the real docker-registry
from tests.waiting import wait_for  # noqa: F401 - the stories import it from here


def built_by(w: World, registry, directory: Path, script: str) -> World:
    """The world with its app image on the real registry and a build command running the
    Python `script` (formatted with `repo`, the checkout, and `host`, the registry's)."""
    build = directory / "build.py"
    build.write_text(script.format(repo=str(REPO), host=registry.host))
    return w.edited(lambda doc: doc["app"].update(
        image=f"{registry.host}/apps/user-service", registry={},
        build={"command": f"{sys.executable} {build}"}))


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, dict]:
    """Run `target` in a daemon thread; the dict gets "result" or "error"."""
    box: dict = {}

    def work() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, box
