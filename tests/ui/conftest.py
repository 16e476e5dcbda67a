"""Fixtures for the console's tests: a fleet file on the local fleet, a fixed clock, UTC.

`console_fleet(...)` starts simulated clusters (the `sim_fleet` fixture), writes a fleet
file for them (the demo's shape: staging, a 10% canary, production in two regions, a
canary strategy with gates) and returns the loaded `FleetConfig` with the fleet.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from console.config import FleetConfig, load

ROOT = Path(__file__).resolve().parents[2]
IDS = ("staging", "prod-eu-10pct", "prod-eu", "prod-us")
GROUPS = {"staging": "[staging, eu]", "prod-eu-10pct": "[prod, eu, canary]",
          "prod-eu": "[prod, eu]", "prod-us": "[prod, us]"}

FLEET = """\
app:
  name: user-service
  image: registry.example.com/apps/user-service
  manifests: {manifests}
  namespace: "{{cluster}}"
  rollout_timeout: {rollout_timeout}
  history: {{path: {history}}}
defaults:
  values:
    replicas: 2
    resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
clusters:
{clusters}
strategies:
  canary:
    waves: {waves}
    gates: true
    max_failures: 0
"""


def fleet_yaml(ids: Sequence[str], history: Path, rollout_timeout: str = "60s") -> str:
    """A fleet file for `ids` (groups from GROUPS, else `[test]`)."""
    clusters = "\n".join(f"  - {{id: {cid}, groups: {GROUPS.get(cid, '[test]')}, "
                         f"credentials: {{kubeconfig: unused.yaml}}}}" for cid in ids)
    canary = [c for c in ids if c.startswith("staging")] or [ids[0]]
    ten = [c for c in ids if c.endswith("10pct")]
    waves = [canary] + ([ten] if ten else []) + [["rest"]]
    waves_text = "[" + ", ".join("[" + ", ".join(w) + "]" for w in waves) + "]"
    return FLEET.format(manifests=ROOT / "deploy" / "user-service", history=history,
                        clusters=clusters, waves=waves_text, rollout_timeout=rollout_timeout)


@pytest.fixture(autouse=True)
def _stable_terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """UTC clock faces and no animations, so screens and snapshots are reproducible."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    monkeypatch.delenv("RELEASE_CONSOLE_THEME", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def console_fleet(sim_fleet: Callable[..., Any], tmp_path: Path
                  ) -> Callable[..., tuple[FleetConfig, Any]]:
    """A factory: `console_fleet(ids=IDS, rollout_timeout="60s", **sim_kwargs)` ->
    (config, started SimFleet)."""

    def make(ids: Sequence[str] = IDS, rollout_timeout: str = "60s",
             **sim_kwargs: Any) -> tuple[FleetConfig, Any]:
        fleet = sim_fleet(list(ids), **sim_kwargs)
        source = tmp_path / "fleet.yaml"
        source.write_text(fleet_yaml(ids, tmp_path / "history", rollout_timeout))
        path = fleet.write_kubeconfigs(tmp_path / "kube", config_path=source)
        return load(path), fleet

    return make


@pytest.fixture
def fixed_clock() -> Callable[[], float]:
    """14:02:11 UTC on 2026-11-25, forever."""
    return lambda: 1764079331.0


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
