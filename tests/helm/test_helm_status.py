"""`status` of a chart fleet whose API servers are slow: a cluster that answers within
Kubernetes' own latency objective (a namespaced LIST, such as Helm's release records, may
take up to 5 s at the 99th percentile) is read; only one that answers nothing is
unreachable (exit 4)."""

from __future__ import annotations

import json

from console.cli import main


def test_status_reads_a_slow_cluster_and_calls_only_a_silent_one_unreachable(helm_world,
                                                                             capsys):
    w = helm_world(["a", "b", "c"])
    assert w.release("v1").exit_code == 0
    # Every API request of b answers 4 s late (its two reads: the Deployment and Helm's
    # release records), within the SLO; c accepts requests and answers none (a hung server).
    w.fleet.set_faults("b", latency=4.0)
    w.fleet.set_faults("c", latency=600.0)
    capsys.readouterr()
    assert main(["status", "--config", str(w.config_path), "--json"]) == 4
    doc = json.loads(capsys.readouterr().out)
    by = {c["cluster"]: c for c in doc["clusters"]}
    assert (by["b"]["reachable"], by["b"]["version"], by["b"]["helm_revision"]) == \
        (True, "v1", 1), by["b"]["error"]
    assert doc["unreachable"] == ["c"]
    assert "timed out waiting for the API server" in by["c"]["error"]
