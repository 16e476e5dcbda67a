"""Shared fixtures: `sim_fleet` starts simulated clusters (console.sim) and stops them at
teardown; `lab` is the session's one real lab (console/lab; tests/lab and tests/helm use it).

`make test` runs the suite on four pytest-xdist workers (`-n 4 --dist loadgroup`): every
test marked `real` joins the xdist group "lab", so one worker runs them all and only that
worker starts the session's lab (each worker would otherwise start its own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from console.sim import ClusterSpec, SimFleet


@pytest.hookimpl(tryfirst=True)   # before xdist's hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every `real` test in the xdist group "lab" (one worker, one lab); without
    xdist the mark does nothing."""
    for item in items:
        if item.get_closest_marker("real"):
            item.add_marker(pytest.mark.xdist_group("lab"))


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
    unseeded = []
    for fleet in fleets:
        try:
            if not fleet.seeded and fleet.running:
                random = {cid: n for cid in fleet.ids
                          if (n := fleet.counters(cid)["random_faults"])}
                if random:
                    unseeded.append(f"seed {fleet.seed}: {random}")
        finally:
            fleet.stop()
    # A failure under random faults must replay: such a fleet needs `seed=`.
    assert not unseeded, ("requests met random faults on a fleet without seed=; pass one "
                          f"(requests with random faults by cluster: {unseeded})")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One started LabFleet over c0..c2 for the whole session (tests/lab/conftest.py's
    `IDS` and `SETTINGS`); a machine without the lab's programs fails, never skips."""
    from console.lab import LabError, LabFleet
    from console.lab.fleet import find_programs
    from tests.lab.conftest import IDS, SETTINGS

    try:
        find_programs()
    except LabError as exc:
        pytest.fail(f"the real tests need the lab's components: {exc}", pytrace=False)
    directory = tmp_path_factory.mktemp("lab")
    fleet = LabFleet(list(IDS), directory, **SETTINGS)
    fleet.start(timeout=300)
    yield fleet
    fleet.stop()
