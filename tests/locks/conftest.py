"""Fixtures of the lock tests: the engine tests' `world` for the release lock under the
real engine and CLI."""

from __future__ import annotations

from tests.engine.conftest import world  # noqa: F401 - fixture re-exported
