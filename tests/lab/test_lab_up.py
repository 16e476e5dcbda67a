"""`release-console lab up` as a user runs it (issue 12's done-when), in a subprocess:
`ready` only once every cluster answers, a v1.37 server for kubectl, the fleet file
rewritten as `sim` does with per-cluster `sim:` settings honoured, a release that reaches
every cluster, a never-pulling tag that fails and is rolled back, and every process gone
after SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from console.cli import main
from console.lab.stages import glob_regex
from console.sim.faults import matches
from tests.lab.conftest import REPO
from tests.waiting import wait_for

FLEET = {
    "app": {"name": "user-service", "image": "registry.example.com/apps/user-service",
            "manifests": str(REPO / "deploy" / "user-service"), "namespace": "{cluster}",
            "rollout_timeout": "90s"},
    "defaults": {"values": {"replicas": 2, "resources": {"requests": {"cpu": "10m"}}}},
    "clusters": [{"id": "eu", "credentials": {"kubeconfig": "eu.yaml"}},
                 # Per cluster: this one also never pulls "*-slow" tags.
                 {"id": "us", "credentials": {"kubeconfig": "us.yaml"},
                  "sim": {"never_pull": ["*broken*", "*-slow"]}}],
    "sim": {"readiness_delay": 0.5, "jitter": 0.2, "never_pull": ["*broken*"]},
}


def test_glob_regexes_match_what_the_simulator_matches():
    images = ["r.example/apps/a:v1-broken", "r.example/apps/a:v1", "127.0.0.1:5000/a:x.y",
              "a:1.2-slow", "a@sha256:00", "r/broken:v1", "a:v1+meta", "a:v1(x)"]
    for glob in ("*broken*", "*-slow", "v?", "x.y", "*+meta", "*(x)"):
        for image in images:
            tag = image.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
            ours = bool(re.match(glob_regex(glob), tag) or re.match(glob_regex(glob), image))
            assert ours == matches(image, [glob]), (glob, image)


def lab_up(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """`release-console lab up ARGS` as a process (output unbuffered, read by the test)."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "release-console"), "lab", "up", *args], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


def sigterm(proc: subprocess.Popen[str]) -> int:
    """SIGTERM, then the exit code within 60 s (killed when it has not ended by then)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()


def read_until_ready(proc: subprocess.Popen[str], lines: list[str], timeout: float) -> str:
    found: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "ready" in line:
                found.append(line)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    assert found, f"no ready line in {timeout} s: {''.join(lines)}"
    return found[0]


def descendants(pid: int) -> set[int]:
    """Processes whose parent chain leads to `pid`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


# A foreground server's wait (`lab up`, `sim`) as its main thread runs it, signalled at
# the worst moment: while that thread holds the stop event's lock, as `stop.wait()` does
# entering and leaving each wait - where a process short of CPU is caught by a SIGTERM
# sent right after `ready`. Python runs the handler there, at the next bytecode.
SIGNALLED_IN_THE_WAIT = """
import os, signal, sys
from console.cli.serving import stop_on_signals
stop = stop_on_signals()
with stop._cond:                 # the lock stop.wait() holds entering and leaving a wait
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):        # bytecodes: the handler runs among them
        pass
print("handled", flush=True)
sys.exit(0 if stop.wait(60) else 1)
"""


def test_a_signal_during_the_wait_s_own_lock_still_stops_the_server():
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED_IN_THE_WAIT], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Generous: a hung handler never ends (it waited for a lock its own thread held).
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the signal handler hung: the server would never stop") from None
    assert (proc.returncode, out) == (0, "handled\n"), err


@pytest.mark.real
@pytest.mark.timeout(420)   # a lab of its own, on a machine that may be busy
def test_lab_up_serves_real_clusters_until_sigterm(tmp_path, capsys):
    source = tmp_path / "clusters.yaml"
    source.write_text(yaml.safe_dump(FLEET, sort_keys=False))
    out_dir = tmp_path / "lab"
    proc = lab_up("--config", str(source), "--kubeconfig-dir", str(out_dir))
    lines: list[str] = []
    try:
        ready = read_until_ready(proc, lines, 300)
        assert ready.startswith("ready: 2 real clusters"), lines
        assert not any("ready" in line for line in lines[:-1])
        children = descendants(proc.pid)
        assert len(children) >= 9           # etcd + 4 per cluster
        version = subprocess.run(
            [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(out_dir / "eu.yaml"),
             "--cache-dir", str(tmp_path / "kc"), "version", "-o", "json"],
            capture_output=True, text=True, timeout=60)
        assert version.returncode == 0, version.stderr
        server = json.loads(version.stdout)["serverVersion"]
        assert (server["major"], server["minor"]) == ("1", "37"), server
        assert server["gitVersion"].startswith("v1.37.")
        fleet = yaml.safe_load((out_dir / "clusters.yaml").read_text())
        assert fleet["clusters"][0]["credentials"] == {"kubeconfig": str(out_dir / "eu.yaml")}
        assert fleet["app"]["image"].startswith("127.0.0.1:")
        assert Path(fleet["app"]["registry"]["ca_file"]).read_bytes().startswith(b"-----BEGIN")
        assert (out_dir / "logs" / "eu" / "kube-apiserver.log").stat().st_size > 0
        config = str(out_dir / "clusters.yaml")
        assert main(["--config", config, "deploy", "--tag", "v1", "--strategy", "parallel",
                     "--yes", "--fail-fast-grace", "0.5"]) == 0, capsys.readouterr()
        capsys.readouterr()
        # Only `us` never pulls "-slow" tags: eu succeeds, us fails and is rolled back.
        assert main(["--config", config, "deploy", "--tag", "v2-slow", "--strategy", "parallel",
                     "--yes", "--fail-fast-grace", "0.5"]) == 1
        out = capsys.readouterr().out
        assert "rolled back to v1" in out and ("ErrImagePull" in out or "ImagePullBackOff" in out)
        assert main(["--config", config, "deploy", "--tag", "v3-broken", "--strategy",
                     "parallel", "--yes", "--fail-fast-grace", "0.5"]) == 1
        capsys.readouterr()
        assert main(["--config", config, "status", "--json"]) in (0, 1)
        rows = {c["cluster"]: c["version"] for c in json.loads(capsys.readouterr().out)["clusters"]}
        assert rows == {"eu": "v2-slow", "us": "v1"}
    finally:
        code = sigterm(proc)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    wait_stopped(children)


def wait_stopped(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until none of `pids` runs any more; fail naming them after `timeout` s."""
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
             f"processes {pids} to stop after SIGTERM", timeout)


@pytest.mark.real
def test_sigterm_while_starting_stops_what_was_started(tmp_path):
    proc = lab_up("1", "--kubeconfig-dir", str(tmp_path / "lab"), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("lab: starting 1 cluster")
        started = proc.stdout.readline()          # the kube-apiservers are on their way
        assert "kube-apiserver" in started, started
        children = descendants(proc.pid)
        assert children, "no component was started"
    finally:
        code = sigterm(proc)
    rest = proc.stdout.read() if proc.stdout else ""
    assert code == 130, (rest, proc.stderr.read() if proc.stderr else "")
    assert "ready" not in rest
    wait_stopped(children)


def test_lab_up_n_takes_the_fleet_file_s_app_and_sim_settings(tmp_path):
    from console.cli.lab_cmd import count_source

    demo = yaml.safe_load((REPO / "clusters.yaml").read_text())
    source = count_source(REPO / "clusters.yaml", 3, tmp_path / "lab")
    doc = yaml.safe_load(source.read_text())
    assert [c["id"] for c in doc["clusters"]] == ["c0", "c1", "c2"]
    assert doc["app"]["manifests"] == str(REPO / "deploy" / "user-service")
    assert "path" not in (doc["app"].get("history") or {})      # a scratch ledger
    assert doc["sim"] == demo["sim"] and doc["defaults"] == demo["defaults"]
    assert "strategies" not in doc                               # they name other clusters
    # Without a fleet file: the default app, no settings.
    bare = yaml.safe_load(count_source(None, 1, tmp_path / "bare").read_text())
    assert [c["id"] for c in bare["clusters"]] == ["c0"] and "sim" not in bare


@pytest.mark.real
@pytest.mark.timeout(420)
def test_lab_up_in_a_dir_named_ready_stops_cleanly(tmp_path):
    """Nothing before the `ready:` line says "ready" even when the directory does, and a
    SIGTERM stops the lab in order (KWOK and controllers, kube-apiservers, etcd) with no
    SIGKILL, well under the 10 s grace."""
    out_dir = tmp_path / "ready-lab"
    proc = lab_up("1", "--kubeconfig-dir", str(out_dir), cwd=tmp_path)
    lines: list[str] = []
    try:
        ready = read_until_ready(proc, lines, 300)
        assert ready.startswith("ready: 1 real clusters"), lines
    finally:
        code = sigterm(proc)
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, err
    stopped = re.search(r"lab: stopped in ([0-9.]+) s(.*)", err)
    assert stopped, err
    assert "SIGKILL" not in stopped.group(2), err
    assert float(stopped.group(1)) < 5.0, err
