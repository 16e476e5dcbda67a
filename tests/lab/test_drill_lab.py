"""`release-console drill --lab`: the rehearsal on real control planes (console/lab) that
the drill starts itself from the fleet file - two clusters, the drill tag failing on one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from console.cli import main
from tests.lab.conftest import APP, REPO


@pytest.mark.real
def test_drill_on_the_lab_detects_and_rolls_back(tmp_path: Path, capsys) -> None:
    fleet = tmp_path / "clusters.yaml"
    fleet.write_text(yaml.safe_dump({
        "app": {"name": APP, "image": "registry.example.com/apps/user-service",
                "manifests": str(REPO / "deploy" / "user-service"), "namespace": "{cluster}",
                "rollout_timeout": "90s", "history": {"path": str(tmp_path / "history")}},
        "defaults": {"values": {"replicas": 2,
                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}},
        "clusters": [{"id": cid, "groups": ["fleet"], "credentials": {"kubeconfig": f"{cid}.yaml"}}
                     for cid in ("a", "b")],
        "sim": {"readiness_delay": 0.5, "jitter": 0.3}}, sort_keys=False))

    code = main(["drill", "--config", str(fleet), "--lab", "--fail", "b", "--json",
                 "--fail-fast-grace", "3"])

    drill = json.loads(capsys.readouterr().out)
    assert code == 0 and drill["fleet"] == "lab" and drill["ok"]
    by = {c["cluster"]: c for c in drill["clusters"]}
    assert by["a"]["outcome"] == "healthy"
    assert by["b"]["outcome"] == "rolled_back" and by["b"]["ok"]
    assert 3.0 <= by["b"]["detect_s"] < 90 and 0 <= by["b"]["rollback_s"] < 90
