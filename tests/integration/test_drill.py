"""`release-console drill` through the CLI: it rehearses a release and its rollback on a
local simulator built from the fleet file - never on the fleet the file points at - from
the versions the ledger records, and records the result as a drill that the version
matrix, `status` and `history` never take for a release."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from console.cli import main
from console.config import load
from console.history import Ledger

FAST = ["--fail-fast-grace", "1"]


def quick_local_fleet(path: Path) -> None:
    """The drill's simulator reads `sim:` from the fleet file: make its pods quick."""
    doc = yaml.safe_load(path.read_text())
    doc["sim"] = {"readiness_delay": 0.2, "jitter": 0.1}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def output_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_drill_times_detection_and_rollback_from_the_ledger_versions(world, capsys):
    w = world(["a", "b", "c"])
    quick_local_fleet(w.config_path)
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--strategy",
                 "parallel", "--json"]) == 0
    capsys.readouterr()
    before = {cid: w.fleet.counters(cid) for cid in "abc"}

    code = main(["drill", "--config", str(w.config_path), "--fail", "b", "--json", *FAST])

    drill = output_json(capsys)
    assert code == 0 and drill["ok"] is True and drill["exit_code"] == 0
    by = {c["cluster"]: c for c in drill["clusters"]}
    assert [by[c]["baseline"] for c in "abc"] == ["v1", "v1", "v1"]   # from the ledger
    assert by["b"]["role"] == "fail" and by["b"]["outcome"] == "rolled_back"
    assert 1.0 <= by["b"]["detect_s"] < drill["rollout_timeout"]
    assert 0 < by["b"]["rollback_s"] < drill["rollout_timeout"] and by["b"]["ok"]
    assert (by["a"]["outcome"], by["a"]["detect_s"], by["a"]["ok"]) == ("healthy", None, True)
    assert drill["tag"].startswith("drill-") and drill["fleet"] == "sim"
    # The real fleet was never touched: the same requests as before, still v1.
    assert {cid: w.fleet.counters(cid) for cid in "abc"} == before
    assert [w.version(c) for c in "abc"] == ["v1", "v1", "v1"]


def test_a_drill_is_never_a_release_in_the_matrix_status_or_history(world, capsys):
    w = world(["a", "b"])
    quick_local_fleet(w.config_path)
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--json"]) == 0
    capsys.readouterr()
    assert main(["drill", "--config", str(w.config_path), "--fail", "a", *FAST]) == 0
    text = capsys.readouterr().out
    assert "a " in text and "rolled_back" in text and "passed" in text

    assert main(["status", "--config", str(w.config_path), "--json"]) == 0
    status = output_json(capsys)
    assert [(c["cluster"], c["recorded"], c["last_good"], c["drift"])
            for c in status["clusters"]] == [("a", "v1", "v1", False), ("b", "v1", "v1", False)]
    assert main(["history", "--config", str(w.config_path), "--json"]) == 0
    releases = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["version"] for r in releases] == ["v1"]
    assert main(["history", "--config", str(w.config_path), "--drills", "--json"]) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["fail"] == ["a"] and listed["clusters"][0]["rollback_s"] > 0
    assert main(["history", "--config", str(w.config_path), "--drills"]) == 0
    assert "passed  a=detect " in capsys.readouterr().out
    ledger = Ledger.for_config(load(w.config_path))
    try:
        [drill] = ledger.drills()
        assert drill["fail"] == ["a"] and drill["ok"] is True
        assert ledger.last_good("a") == "v1"
    finally:
        ledger.close()


def test_a_fail_cluster_the_strategy_never_reaches_fails_the_drill(world, capsys):
    w = world(["a", "b", "c"])
    quick_local_fleet(w.config_path)
    # Serial stops at the first failure: b fails and is rolled back, c is never reached.
    code = main(["drill", "--config", str(w.config_path), "--strategy", "serial",
                 "--fail", "b,c", "--json", *FAST])
    drill = output_json(capsys)
    assert code == 1 and drill["ok"] is False
    by = {c["cluster"]: c for c in drill["clusters"]}
    assert by["b"]["ok"] and by["b"]["baseline"] == "drill-baseline"   # none recorded
    assert (by["c"]["outcome"], by["c"]["ok"]) == ("skipped", False)
    assert "not reached" in by["c"]["error"]


def test_bad_input_is_refused_before_any_fleet_starts(world, capsys):
    w = world(["a"])
    assert main(["drill", "--config", str(w.config_path), "--fail", "prod-zz"]) == 2
    assert "--fail: unknown cluster 'prod-zz'" in capsys.readouterr().err
    assert main(["drill", "--config", str(w.config_path), "--strategy", "canary"]) == 2
    assert "canary" in capsys.readouterr().err


def test_lab_without_its_components_is_a_clear_error(world, capsys, monkeypatch, tmp_path):
    import console.binaries
    w = world(["a"])
    monkeypatch.setattr(console.binaries, "CHECKOUT_BIN", tmp_path / "no-bin")
    monkeypatch.delenv("RELEASE_CONSOLE_BIN", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")     # git, but none of the lab's programs
    assert main(["drill", "--config", str(w.config_path), "--lab"]) == 2
    err = capsys.readouterr().err
    assert "--lab: lab: etcd, kube-apiserver" in err and "make bin" in err


def test_a_drill_runs_inside_a_freeze_window(world, capsys):
    """Nothing real is released: the fleet file's freeze windows do not apply to a drill."""
    w = world(["a"])
    quick_local_fleet(w.config_path)
    doc = yaml.safe_load(w.config_path.read_text())
    doc["freeze"] = [{"name": "always", "from": "2000-01-01T00:00:00Z",
                      "to": "2100-01-01T00:00:00Z", "reason": "frozen"}]
    w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v1"]) == 2
    capsys.readouterr()
    assert main(["drill", "--config", str(w.config_path), "--fail", "a", "--json", *FAST]) == 0
    assert output_json(capsys)["clusters"][0]["outcome"] == "rolled_back"


def test_drill_fail_prod_us_on_the_demo_fleet_file_prints_times_and_exits_0(tmp_path, capsys):
    """Issue 15's done-when line: `drill --fail prod-us` on the demo fleet (the repository's
    clusters.yaml, as `release-console demo` serves it) prints detection and rollback
    times and exits 0 when every rollback worked within the limits. A copy with its ledger
    in the test's directory; the clusters' kubeconfigs need not exist - a drill never
    touches the fleet."""
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "clusters.yaml").read_text()   # as text: YAML 1.1 reads `on:` as true
    assert "manifests: deploy/user-service" in text and "path: .release-history" in text
    text = text.replace("manifests: deploy/user-service",
                        f"manifests: {repo / 'deploy' / 'user-service'}")
    text = text.replace("path: .release-history", f"path: {tmp_path / 'history'}")
    path = tmp_path / "clusters.yaml"
    path.write_text(text)

    code = main(["drill", "--config", str(path), "--fail", "prod-us", *FAST])

    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    line = next(line for line in out.splitlines() if line.lstrip().startswith("prod-us"))
    assert "DETECT" in out and "ROLLBACK" in out, out
    assert "rolled_back" in line or "rolled back" in line, line
    ledger = Ledger.for_config(load(path))
    try:
        [drill] = ledger.drills()
    finally:
        ledger.close()
    [us] = [c for c in drill["clusters"] if c["cluster"] == "prod-us"]
    assert us["ok"] and 0 < us["detect_s"] and 0 < us["rollback_s"] < drill["rollout_timeout"]
