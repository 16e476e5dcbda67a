"""`release-console demo --chart DIR`: the demo fleet ships the app as the example chart."""

from __future__ import annotations

import os

import pytest

from console.cli.demo_cmd import use_chart
from console.config import load
from console.errors import UserError
from console.sim import SimFleet

from .conftest import CHART, REPO, approve


def test_demo_fleet_switched_to_the_chart_releases_with_helm(tmp_path, helm):
    fleet = SimFleet.from_config(REPO / "clusters.yaml")
    fleet.start()
    try:
        rewritten = fleet.write_kubeconfigs(tmp_path, config_path=REPO / "clusters.yaml")
        use_chart(rewritten, str(CHART))
        assert os.stat(rewritten).st_mode & 0o777 == 0o600
        config = load(rewritten)
        assert config.app.chart is not None and config.app.chart.chart == str(CHART)
        from console.engine import Engine, ReleaseRequest
        engine = Engine(config, grace=0.5)
        try:
            result = engine.run(ReleaseRequest(tag="1.0", clusters="staging"), approve)
        finally:
            engine.close()
        assert result.outcome == "ok", result.preflight.table() if result.preflight else result
        secrets = fleet.list("staging", "/secrets", config.cluster("staging").namespace)
        assert any(s["metadata"]["name"] == "sh.helm.release.v1.user-service.v1" for s in secrets)
    finally:
        fleet.stop()


def test_a_directory_without_chart_yaml_is_refused(tmp_path):
    target = tmp_path / "clusters.yaml"
    target.write_text("app: {name: web}\n")
    with pytest.raises(UserError, match="not a chart directory"):
        use_chart(target, str(tmp_path))


def test_the_chart_switch_keeps_keys_as_written(tmp_path):
    """YAML 1.1 reads an unquoted `on:` (notify) as True; the switch must not turn the
    demo's `notify: on: [failure]` into a key the loader refuses."""
    target = tmp_path / "clusters.yaml"
    target.write_text((REPO / "clusters.yaml").read_text())
    use_chart(target, str(CHART))
    assert load(target).app.notify.on == ("failure",)
