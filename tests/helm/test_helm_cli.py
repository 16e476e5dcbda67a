"""The headless commands with a chart: `deploy` records Helm revisions in the ledger,
`status` shows chart version, app version and revision (and `--json` its fields), a `helm upgrade`
made outside the console is drift, `rollback CLUSTER --to VERSION` lands on the right
revision, `check` reports the helm version, and a missing helm stops a release or a
rollback before anything is touched (exit 2, saying how to get it)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from console.cli import main


def ledger_lines(world) -> list[dict]:
    path = world.config.app.history.path / "history" / "user-service.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def hide_helm(monkeypatch, tmp_path) -> None:
    """No helm anywhere the console looks: PATH without it, and no built binaries."""
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.path.exists(os.path.join(d, "helm"))]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    monkeypatch.setenv("RELEASE_CONSOLE_BIN", str(tmp_path / "empty"))
    monkeypatch.setattr("console.binaries.CHECKOUT_BIN", tmp_path / "empty")


def test_deploy_status_drift_and_rollback_to_version(helm_world, capsys):
    w = helm_world(["h1", "h2"])
    for tag in ("v1", "v2"):
        assert main(["deploy", "--config", str(w.config_path), "--tag", tag,
                     "--strategy", "parallel", "--yes"]) == 0
    capsys.readouterr()
    # The ledger holds the Helm revision of every cluster outcome.
    outcomes = [r for r in ledger_lines(w) if r.get("type") == "cluster"]
    assert {(r["cluster"], r["version"], r["helm_revision"]) for r in outcomes} == {
        ("h1", "v1", 1), ("h2", "v1", 1), ("h1", "v2", 2), ("h2", "v2", 2)}

    assert main(["status", "--config", str(w.config_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by = {c["cluster"]: c for c in doc["clusters"]}
    assert by["h1"]["helm_revision"] == 2 and by["h1"]["chart_version"] == "0.1.0"
    assert by["h1"]["helm_status"] == "deployed" and by["h1"]["version"] == "v2"
    assert by["h1"]["app_version"] == "1.0.0"   # Chart.yaml's appVersion
    assert doc["drift"] == []

    # Someone runs helm by hand on h2: same tag, other values - a new revision.
    env = {"HELM_DRIVER": "secret", "HOME": str(w.config_path.parent),
           "PATH": os.environ.get("PATH", "")}
    subprocess.run([str(w.helm), "upgrade", "user-service", w.config.app.chart.chart,
                    "-n", "h2", "--kubeconfig", str(w.kubeconfig("h2")), "--reuse-values",
                    "--set", "replicas=3"], check=True, capture_output=True, env=env,
                   timeout=120)
    assert main(["status", "--config", str(w.config_path)]) == 0
    text = capsys.readouterr().out
    assert "v2 (helm r2, chart 0.1.0, app 1.0.0, deployed)" in text
    h2 = next(line for line in text.splitlines() if line.startswith("h2"))
    assert "helm r3" in h2 and "DRIFT (ledger says Helm revision 2, live 3)" in h2
    assert "h2 run(s) a version or Helm revision the ledger did not record" in text

    # A rollback to a version goes to the Helm revision that ran it.
    assert main(["rollback", "h1", "--to", "v1", "--config", str(w.config_path),
                 "--yes"]) == 0
    history = w.history("h1")
    assert history[-1]["revision"] == 3 and history[-1]["description"] == "Rollback to 1"
    assert w.version("h1") == "v1"
    last = [r for r in ledger_lines(w) if r.get("type") == "cluster"][-1]
    assert (last["cluster"], last["version"], last["helm_revision"]) == ("h1", "v1", 3)


def test_check_reports_the_helm_version(helm_world, capsys):
    w = helm_world(["h1"])
    code = main(["check", "--config", str(w.config_path), "--tag", "v1", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    results = json.loads(out)
    rows = results["results"] if isinstance(results, dict) else results
    chart = next(r for r in rows if r["check"] == "chart")
    assert chart["ok"] and chart["detail"].startswith("helm v3.")
    assert "helm lint passed" in chart["detail"]
    dry = next(r for r in rows if r["check"] == "dry-run")
    assert dry["ok"]


def test_missing_helm_is_exit_2_and_nothing_is_touched(helm_world, capsys, monkeypatch,
                                                        tmp_path):
    w = helm_world(["h1"])
    hide_helm(monkeypatch, tmp_path)
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--yes"])
    captured = capsys.readouterr()
    assert code == 2
    assert "helm not found" in captured.out + captured.err
    assert "make bin" in captured.out + captured.err
    assert w.fleet.get("h1", "/namespaces", "", "h1") is None
    assert w.fleet.get("h1", "apps/deployments", "h1", "user-service") is None


def test_status_reads_helm_history_without_the_helm_binary(helm_world, capsys, monkeypatch,
                                                           tmp_path):
    w = helm_world(["h1"])
    assert w.release("v1").exit_code == 0
    hide_helm(monkeypatch, tmp_path)
    assert main(["status", "--config", str(w.config_path), "--json"]) == 0
    h1 = json.loads(capsys.readouterr().out)["clusters"][0]
    assert (h1["version"], h1["helm_revision"], h1["chart_version"]) == ("v1", 1, "0.1.0")


def test_a_rollback_with_helm_missing_is_exit_2_and_touches_nothing(helm_world, capsys,
                                                                     monkeypatch, tmp_path):
    """`rollback CLUSTER --to V`, `rollback --release ID` and the engine call the TUI's
    rollback key makes: helm is looked for before the release lock or the ledger."""
    from console.engine import Engine
    from console.errors import UserError

    w = helm_world(["h1"])
    for tag in ("v1", "v2"):
        assert main(["deploy", "--config", str(w.config_path), "--tag", tag,
                     "--strategy", "parallel", "--yes"]) == 0
    second = [r for r in ledger_lines(w) if r.get("type") == "cluster"][-1]["release"]
    ledger = w.config.app.history.path / "history" / "user-service.jsonl"
    before_ledger = ledger.read_text()
    lease = w.fleet.get("h1", "coordination.k8s.io/leases", "h1",
                         "release-console-user-service")
    assert lease is not None      # the releases took and gave it back
    hide_helm(monkeypatch, tmp_path)
    capsys.readouterr()

    for argv in (["rollback", "h1", "--to", "v1"], ["rollback", "--release", second]):
        code = main([*argv, "--config", str(w.config_path), "--yes"])
        captured = capsys.readouterr()
        assert code == 2, (argv, captured)
        assert "helm not found" in captured.err and "make bin" in captured.err, captured
    engine = Engine(w.config)
    try:
        with pytest.raises(UserError, match="helm not found"):
            engine.rollback("h1", "v1", by="test")      # what the TUI's key calls
        with pytest.raises(UserError, match="helm not found"):
            engine.rollback_release(second, by="test")
    finally:
        engine.close()

    assert ledger.read_text() == before_ledger          # no record started, none ended
    assert w.fleet.get("h1", "coordination.k8s.io/leases", "h1",
                         "release-console-user-service") == lease
    assert w.version("h1") == "v2"
    assert [h["revision"] for h in w.history("h1")] == [1, 2]
