"""The headless CLI through `console.cli.main([...])` (and once as a real subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from console.cli import main

CANARY = {"canary": {"waves": [["s1"], ["p1", "p2"]], "gates": True, "max_failures": 0}}


def events_of(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_deploy_json_and_junit(world, capsys, tmp_path):
    w = world(["s1", "p1", "p2"], strategies=CANARY)
    junit = tmp_path / "report" / "junit.xml"
    junit.parent.mkdir()
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--strategy",
                 "canary", "--yes", "--json", "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 0
    events = events_of(out)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "release_planned" and kinds[-1] == "release_finished"
    assert kinds.count("cluster_healthy") == 3 and kinds.count("gate_decided") == 1
    assert events[-1]["outcome"] == "ok" and events[-1]["exit_code"] == 0
    assert all(e["release"] == events[0]["release"] for e in events)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "0"
    assert [c.get("name") for c in suite.iter("testcase")] == ["s1", "p1", "p2"]
    assert [w.version(c) for c in ("s1", "p1", "p2")] == ["v1"] * 3


def test_deploy_failure_exit_1_with_rollback_in_junit(world, capsys, tmp_path):
    w = world(["a", "b"])
    w.deploy_everywhere("v1")
    w.fleet.set_faults("b", crash=["v2"])
    junit = tmp_path / "junit.xml"
    code = main(["deploy", "--tag", "v2", "--config", str(w.config_path),
                 "--junit", str(junit), "--fail-fast-grace", "0.5"])
    out = capsys.readouterr().out
    assert code == 1
    assert "rolled back to v1" in out and "release r-" in out
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["a"].find("failure") is None
    failure = cases["b"].find("failure")
    assert failure is not None and failure.get("type") == "rolled_back"
    assert "CrashLoopBackOff" in failure.get("message")
    assert w.version("b") == "v1"


def test_junit_path_that_cannot_be_written_is_refused_before_anything_starts(world, capsys,
                                                                            tmp_path):
    # Before: the release ran, then writing the report raised (a traceback after a
    # successful release, exit 1 in CI) - or a missing directory was silently created.
    w = world(["a"])
    history = w.config.app.history.path
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("")
    # /proc takes no new files, even from root (chmod would not stop root).
    for junit, why in ((Path("/proc/junit.xml"), "cannot write in /proc"),
                       (not_a_dir / "junit.xml", "is not a directory"),
                       (tmp_path / "no-such-dir" / "junit.xml", "does not exist"),
                       (tmp_path, "is a directory"),
                       (tmp_path / ("x" * 300), "file name too long")):
        code = main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--json",
                     "--junit", str(junit)])
        captured = capsys.readouterr()
        assert code == 2, captured.err
        assert why in captured.err and (str(junit) in captured.err or "x" * 300 in str(junit))
        assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "no-such-dir").exists()
    assert w.version("a") is None                 # no cluster touched
    assert not os.path.exists(history)            # not even the ledger opened
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".junit")] == []


def test_gate_without_yes_and_without_terminal_stops_with_exit_3(world, capsys):
    w = world(["s1", "p1", "p2"], strategies=CANARY)
    code = main(["--config", str(w.config_path), "deploy", "--tag", "v1",
                 "--strategy", "canary"])
    captured = capsys.readouterr()
    assert code == 3
    assert "waits for approval before wave 2" in captured.err and "--yes" in captured.err
    assert w.version("s1") == "v1" and w.version("p1") is None


def test_bad_input_exit_2_naming_it(world, capsys):
    w = world(["a", "b"])
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1",
                 "--clusters", "a,nosuch"])
    assert code == 2
    assert "nosuch" in capsys.readouterr().err
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1;rm -rf /"])
    assert code == 2
    assert "not a valid image tag" in capsys.readouterr().err
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1",
                 "--order", "b,zz"])
    assert code == 2 and "zz" in capsys.readouterr().err
    assert w.version("a") is None and w.version("b") is None


def test_plan_prints_waves_and_versions_and_touches_nothing(world, capsys):
    w = world(["s1", "p1", "p2"], strategies=CANARY)
    w.deploy_everywhere("v1", ["s1"])
    before = {c: w.fleet.counters(c)["by_verb"] for c in ("s1", "p1", "p2")}
    code = main(["plan", "--config", str(w.config_path), "--tag", "v2", "--strategy", "canary"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    row = next(line.split() for line in lines if " s1 " in f" {line} ")
    assert row[:5] == ["1", "s1", "1", "v1", "v2"]
    row = next(line.split() for line in lines if " p1 " in f" {line} ")
    assert row[:6] == ["2", "p1", "2", "(gate)", "-", "v2"]
    for c, verbs in before.items():
        after = w.fleet.counters(c)["by_verb"]
        assert {k: v for k, v in after.items() if k not in ("get", "list")} == \
            {k: v for k, v in verbs.items() if k not in ("get", "list")}
    code = main(["plan", "--config", str(w.config_path), "--json", "--clusters", "p*"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["targets"] == ["p1", "p2"]
    assert [c["live_version"] for c in data["clusters"]] == [None, None]


def test_status_and_rollbacks(world, capsys):
    w = world(["a", "b"])
    # Recorded (a rollback's default target is the ledger's version before the current).
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v1"]) == 0
    capsys.readouterr()
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v2", "--json"])
    release = events_of(capsys.readouterr().out)[0]["release"]
    assert code == 0
    code = main(["status", "--config", str(w.config_path), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(c["cluster"], c["version"], c["release_id"]) for c in data["clusters"]] == \
        [("a", "v2", release), ("b", "v2", release)]
    # Rollback needs --yes without a terminal.
    assert main(["rollback", "a", "--config", str(w.config_path)]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["rollback", "a", "--config", str(w.config_path), "--yes"]) == 0
    assert "a: rolled_back v2 -> v1" in capsys.readouterr().out
    assert w.version("a") == "v1"
    assert main(["rollback", "--release", release, "--yes", "--config", str(w.config_path)]) == 0
    out = capsys.readouterr().out
    assert "b: rolled_back v2 -> v1" in out and w.version("b") == "v1"
    code = main(["status", "--config", str(w.config_path)])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[0].split()[:3] == ["CLUSTER", "LIVE", "RECORDED"]
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["v1", "v1"]


def test_check_table_and_exit_codes(world, capsys):
    w = world(["a", "b"])
    assert main(["check", "--config", str(w.config_path), "--tag", "v1"]) == 0
    out = capsys.readouterr().out
    assert "pre-flight passed" in out and "namespace" in out
    w.fleet.kill("b")
    assert main(["check", "--config", str(w.config_path), "--tag", "v1"]) == 2
    out = capsys.readouterr().out
    failing = [line for line in out.splitlines() if " FAIL " in line]
    assert failing and all(line.startswith("b ") for line in failing)
    assert "connection refused" in out


def test_deploy_as_a_subprocess(world, tmp_path):
    w = world(["a", "b"])
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(w.config_path)}
    proc = subprocess.run([sys.executable, "-m", "console", "deploy", "--tag", "v7",
                           "--strategy", "parallel", "--json"],
                          capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    assert events[-1]["kind"] == "release_finished" and events[-1]["outcome"] == "ok"
    assert w.version("a") == "v7" and w.version("b") == "v7"
    # No secret in anything printed.
    for cid in ("a", "b"):
        token = w.fleet.admin_token(cid)
        assert token not in proc.stdout and token not in proc.stderr


def test_sigterm_aborts_a_release_cleanly(world, tmp_path):
    w = world(["a", "b", "c"], readiness_delay=1.0, jitter=0.0)
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(w.config_path)}
    proc = subprocess.Popen([sys.executable, "-m", "console", "deploy", "--tag", "v1",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, stdin=subprocess.DEVNULL, cwd=tmp_path)
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["kind"] == "cluster_started":
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=60)
    events = seen + events_of(out)
    assert proc.returncode == 3, err
    assert "aborting" in err
    assert events[-1]["kind"] == "release_finished" and events[-1]["outcome"] == "aborted"
    outcomes = [e.get("outcome") for e in events if e["kind"] == "cluster_failed"]
    assert outcomes == ["interrupted"]
    assert [e["cluster"] for e in events if e["kind"] == "cluster_skipped"] == ["b", "c"]
    assert w.version("b") is None and w.version("c") is None


def test_headless_releases_and_rollbacks_are_in_the_ledger(world, capsys):
    from console.history import Ledger
    w = world(["a", "b"])
    w.fleet.set_faults("b", never_pull=["v2"])
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--json"]) == 0
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v2", "--strategy",
                 "parallel", "--json", "--fail-fast-grace", "0.3"]) == 1
    release = events_of(capsys.readouterr().out)[-1]["release"]
    assert main(["rollback", "a", "--yes", "--config", str(w.config_path)]) == 0
    ledger = Ledger.for_config(w.config)
    try:
        records = {r.id: r for r in ledger.releases()}
    finally:
        ledger.close()
    failed = records[release]
    assert (failed.version, failed.outcome, failed.exit_code) == ("v2", "failed", 1)
    assert {c.cluster: c.outcome for c in failed.clusters} == \
        {"a": "healthy", "b": "rolled_back"}
    assert [(r.kind, r.version) for r in records.values()][0] == ("release", "v1")
    manual = [r for r in records.values() if r.kind == "rollback"]
    assert [(m.clusters[0].cluster, m.clusters[0].outcome) for m in manual] == [("a", "healthy")]
