"""An `oci://` chart with a pinned `app.chart_version`, pulled by helm from a real registry
(Debian's docker-registry on 127.0.0.1, plain HTTP: `app.registry.insecure: true`)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from console.config import load
from tests.registry.conftest import Registry, start_registry

from .conftest import APP, CHART, HelmWorld, chart_fleet_file


@pytest.fixture
def chart_registry(tmp_path: Path, helm: Path) -> Iterator[Registry]:
    """A registry holding the example chart as oci://HOST/charts/user-service:0.1.0."""
    workdir = tmp_path / "registry"
    workdir.mkdir()
    server = start_registry(workdir)
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    try:
        subprocess.run([str(helm), "package", str(CHART), "-d", str(tmp_path)], check=True,
                       capture_output=True, timeout=120, env=env)
        subprocess.run([str(helm), "push", str(tmp_path / "user-service-0.1.0.tgz"),
                        f"oci://{server.host}/charts", "--plain-http"], check=True,
                       capture_output=True, timeout=120, env=env)
        yield server
    finally:
        server.stop()


def test_an_oci_chart_is_released_and_rolled_back(sim_fleet, tmp_path, helm, chart_registry):
    fleet = sim_fleet(["h1"], never_pull=["*broken*"])
    source = chart_fleet_file(tmp_path, ["h1"])
    doc = yaml.safe_load(source.read_text())
    doc["app"]["chart"] = f"oci://{chart_registry.host}/charts/user-service"
    doc["app"]["chart_version"] = "0.1.0"
    doc["app"]["registry"] = {"insecure": True}
    source.write_text(yaml.safe_dump(doc))
    path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=source)
    w = HelmWorld(fleet, path, load(path), helm)
    first = w.release("v1")
    assert first.exit_code == 0, first.preflight.table() if first.preflight else first
    chart_row = next(r for r in first.preflight.results if r.check == "chart")
    assert "0.1.0 is pulled and rendered per cluster" in chart_row.detail
    assert w.release("v2-broken").clusters[0].outcome == "rolled_back"
    history = w.history("h1")
    assert [h["chart"] for h in history] == ["user-service-0.1.0"] * 3
    assert history[-1]["description"] == "Rollback to 1" and w.version("h1") == "v1"
    assert fleet.get("h1", "apps/deployments", "h1", APP) is not None


def test_a_chart_version_that_is_not_there_fails_pre_flight(sim_fleet, tmp_path, helm,
                                                            chart_registry):
    fleet = sim_fleet(["h1"])
    source = chart_fleet_file(tmp_path, ["h1"])
    doc = yaml.safe_load(source.read_text())
    doc["app"].update(chart=f"oci://{chart_registry.host}/charts/user-service",
                      chart_version="9.9.9", registry={"insecure": True})
    source.write_text(yaml.safe_dump(doc))
    path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=source)
    w = HelmWorld(fleet, path, load(path), helm)
    result = w.release("v1")
    assert result.exit_code == 2 and result.outcome == "preflight_failed"
    failed = {r.check for r in result.preflight.failures}
    assert "dry-run" in failed and "values" in failed
    assert fleet.get("h1", "apps/deployments", "h1", APP) is None

