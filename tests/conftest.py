"""Shared fixtures: `sim_fleet` starts simulated clusters (console.sim) and stops them at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from console.sim import ClusterSpec, SimFleet


@pytest.fixture
def sim_fleet() -> Iterator[Callable[..., SimFleet]]:
    """A factory: `sim_fleet(["a", "b"], readiness_delay=0.2)` returns a started SimFleet."""
    fleets: list[SimFleet] = []

    def start(clusters: Sequence[str | ClusterSpec] = ("c0",), **kwargs: Any) -> SimFleet:
        kwargs.setdefault("readiness_delay", 0.2)
        kwargs.setdefault("jitter", 0.1)
        fleet = SimFleet(clusters, **kwargs)
        fleets.append(fleet)
        return fleet.start()

    yield start
    for fleet in fleets:
        fleet.stop()
