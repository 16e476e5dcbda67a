"""The TUI's drift mark for a chart app: a `helm upgrade` made outside the console to the
same version is drift too (the fleet grid's row, and the history screen's matrix)."""

from __future__ import annotations

import os
import subprocess

from console.cli import main
from console.history import Ledger
from console.ui.state import ClusterInfo, FleetState


def test_an_outside_helm_upgrade_marks_the_row_as_drift(helm_world):
    w = helm_world(["h1", "h2"])
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--strategy",
                 "parallel", "--yes"]) == 0
    subprocess.run([str(w.helm), "upgrade", "user-service", w.config.app.chart.chart, "-n", "h2",
                    "--kubeconfig", str(w.kubeconfig("h2")), "--reuse-values", "--set",
                    "replicas=3"], check=True, capture_output=True, timeout=120,
                   env={"HELM_DRIVER": "secret", "HOME": str(w.config_path.parent),
                        "PATH": os.environ.get("PATH", "")})
    engine = w.engine()
    try:
        statuses = engine.status()
    finally:
        engine.close()
    state = FleetState([ClusterInfo("h1", ("fleet",)), ClusterInfo("h2", ("fleet",))])
    state.apply_status(statuses)
    ledger = Ledger.for_config(w.config)
    try:
        # As the app folds the matrix in (engine.matrix(live) answers the same rows).
        rows = ledger.matrix({s.cluster: s.version for s in statuses})
        state.apply_recorded({r.cluster: r.recorded for r in rows},
                             {r.cluster: r.recorded_helm_revision for r in rows})
        # As the history screen asks for its matrix.
        screen = ledger.matrix({c: r.live for c, r in state.clusters.items()},
                               {c: r.helm_revision for c, r in state.clusters.items()})
    finally:
        ledger.close()
    assert not state.clusters["h1"].drift
    assert state.clusters["h2"].drift
    assert state.clusters["h2"].live == state.clusters["h2"].recorded == "v1"
    assert {r.cluster: r.drift for r in screen} == {"h1": False, "h2": True}
