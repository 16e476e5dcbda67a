"""The console killed with SIGKILL mid parallel release, and two consoles racing: the next
start reconciles the ledger with the live clusters; clusters are locked only by a lease."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from console.cli import main
from tests.faults.conftest import APP, events_of, releases
from tests.waiting import wait_for

LEASE = f"release-console-{APP}"


def deploy_process(w, tmp_path, tag: str, *args: str) -> subprocess.Popen:
    """`release-console deploy --json` as a real process on the world's fleet."""
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": str(w.config_path)}
    return subprocess.Popen([sys.executable, "-m", "console", "deploy", "--tag", tag, "--json",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL, cwd=tmp_path)


def kill_when_all_started(proc: subprocess.Popen, w, ids: list[str], tag: str) -> list[dict]:
    """Read events until every cluster of `ids` started and its Deployment carries `tag`
    (the new version reached it), then SIGKILL the process."""
    seen: list[dict] = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        seen.append(json.loads(line))
        if sum(e["kind"] == "cluster_started" for e in seen) == len(ids):
            wait_for(lambda: all(w.version(c) == tag for c in ids),
                       f"{tag} applied on {', '.join(ids)}")
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr.read(), [
        e for e in seen if e["kind"] in ("preflight_finished", "release_finished")])
    return seen


def held_leases(w, ids) -> dict[str, dict]:
    """cluster -> the spec of the app's release Lease there (absent ones left out)."""
    found = {}
    for cid in ids:
        lease = w.fleet.get(cid, "coordination.k8s.io/leases", cid, LEASE)
        if lease is not None:
            found[cid] = lease["spec"]
    return found


def test_sigkill_leaves_leases_that_expire_within_their_duration(world, tmp_path):
    from console.locks import DEFAULT_DURATION
    ids = ["a", "b", "c"]
    w = world(ids, readiness_delay=1.5, jitter=0.0)
    w.deploy_everywhere("v1")
    proc = deploy_process(w, tmp_path, "v2", "--strategy", "parallel")
    seen = kill_when_all_started(proc, w, ids, "v2")
    killed_at = datetime.now(timezone.utc)
    assert proc.returncode == -signal.SIGKILL
    release_id = seen[0]["release"]
    leases = held_leases(w, ids)
    assert set(leases) == set(ids)
    for cid, spec in leases.items():
        assert spec["holderIdentity"].endswith(f"/{release_id}")
        renewed = datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
        expires = renewed + timedelta(seconds=spec["leaseDurationSeconds"])
        # Locked no longer than one lease duration after the console died.
        assert spec["leaseDurationSeconds"] <= DEFAULT_DURATION
        assert expires <= killed_at + timedelta(seconds=DEFAULT_DURATION + 1), (cid, spec)
    # The holder ran on this host and its process is gone: the next console takes the
    # leases over at once (no minute-long wait), and gives them back when it ends.
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v3", "--strategy",
                 "parallel", "--json"]) == 0
    assert all(w.version(c) == "v3" for c in ids)
    assert all(not spec.get("holderIdentity") for spec in held_leases(w, ids).values())


def test_a_live_holder_is_never_taken_over(world, tmp_path, capsys):
    w = world(["a", "b"], readiness_delay=3.0, jitter=0.0)
    proc = deploy_process(w, tmp_path, "v1", "--strategy", "parallel")
    try:
        seen: list[dict] = []
        for line in proc.stdout:
            seen.append(json.loads(line))
            if seen[-1]["kind"] == "cluster_started":
                break
        code = main(["deploy", "--config", str(w.config_path), "--tag", "v2", "--json"])
        finished = events_of(capsys.readouterr().out)[-1]
        assert code == 2
        assert "is being released by" in finished["detail"]
        assert f":{proc.pid}/{seen[0]['release']}" in finished["detail"]
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert all(w.version(c) in (None, "v1") for c in ("a", "b"))


def test_sigkill_mid_parallel_release_next_start_reconciles(world, tmp_path, capsys):
    ids = ["a", "b", "c"]
    w = world(ids, readiness_delay=1.5, jitter=0.0)
    w.deploy_everywhere("v1")
    proc = deploy_process(w, tmp_path, "v2", "--strategy", "parallel")
    seen = kill_when_all_started(proc, w, ids, "v2")
    assert proc.returncode == -signal.SIGKILL
    release_id = seen[0]["release"]
    left = releases(w.config)[release_id]
    assert not left.finished          # the killed console never wrote the end
    # The next start (another deploy) closes it with what the clusters really run.
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v3", "--strategy",
                 "parallel", "--json"])
    captured = capsys.readouterr()
    record = releases(w.config)[release_id]
    assert record.finished, captured.err
    assert f"release {release_id} was left unfinished" in captured.err
    by_cluster = {c.cluster: c for c in record.clusters}
    assert set(by_cluster) == set(ids)
    for cid in ids:
        c = by_cluster[cid]
        assert c.reconciled
        # What was recorded is what was live when reconciled (v2 reached, or v1 untouched),
        # never a guess; the new release then moved every cluster on to v3.
        assert c.version in ("v1", "v2"), c
    assert code == 0, captured.err
    assert events_of(captured.out)[-1]["outcome"] == "ok"
    assert all(w.version(c) == "v3" for c in ids)


def test_two_releases_to_overlapping_clusters_exactly_one_proceeds(world, tmp_path):
    w = world(["a", "b", "c"], readiness_delay=1.0, jitter=0.0)
    w.deploy_everywhere("v1")
    first = deploy_process(w, tmp_path, "v2", "--clusters", "a,b", "--strategy", "parallel")
    second = deploy_process(w, tmp_path, "v3", "--clusters", "b,c", "--strategy", "parallel")
    out1, err1 = first.communicate(timeout=90)
    out2, err2 = second.communicate(timeout=90)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (codes, err1, err2)
    winner, loser = (out2, out1) if first.returncode == 2 else (out1, out2)
    winner_tag, loser_tag = ("v3", "v2") if first.returncode == 2 else ("v2", "v3")
    winner_id = events_of(winner)[0]["release"]
    events = events_of(loser)
    # Refused before touching anything, naming the holder (the winner's release).
    assert not [e for e in events if e["kind"] in ("release_started", "cluster_started")]
    finished = events[-1]
    assert finished["kind"] == "release_finished" and finished["exit_code"] == 2
    assert "is being released by" in finished["detail"] and winner_id in finished["detail"]
    assert not any(w.version(c) == loser_tag for c in ("a", "b", "c"))
    assert sum(w.version(c) == winner_tag for c in ("a", "b", "c")) == 2


def ledger_dir(w) -> Path:
    """The fleet's ledger repository (created on first use)."""
    from console.history import Ledger
    ledger = Ledger.for_config(w.config)
    ledger.close()
    return ledger.path


def test_a_stale_index_lock_left_by_a_killed_console_does_not_stop_the_next_release(
        world, tmp_path):
    w = world(["a", "b"])
    w.deploy_everywhere("v1")
    path = ledger_dir(w)
    # A console killed while Git wrote the index: its lock file stays behind, beside a
    # record line it wrote but did not commit.
    lock = path / ".git" / "index.lock"
    lock.write_bytes(b"DIRC\x00\x00")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    with open(path / "deployment-history.log", "a") as log:
        log.write("2026-12-01T09:00:00Z - user-service - v0 - a - ok by dave\n")
    proc = deploy_process(w, tmp_path, "v2", "--strategy", "parallel")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert all(w.version(c) == "v2" for c in ("a", "b"))
    assert not lock.exists()
    assert subprocess.run(["git", "-C", str(path), "status", "--porcelain"], capture_output=True,
                          text=True, timeout=30).stdout == ""
    assert "by dave" in subprocess.run(["git", "-C", str(path), "show", "HEAD:deployment-history.log"],
                                       capture_output=True, text=True, timeout=30).stdout
    assert [r.outcome for r in releases(w.config).values()] == ["ok"]


def test_a_ledger_that_cannot_commit_before_the_release_is_one_line_and_exit_2(
        world, tmp_path):
    w = world(["a"])
    w.deploy_everywhere("v1")
    path = ledger_dir(w)
    # Lines a stopped console left, and a Git index that cannot be read or written.
    with open(path / "deployment-history.log", "a") as log:
        log.write("2026-12-01T09:00:00Z - user-service - v0 - a - ok by dave\n")
    index = path / ".git" / "index"
    index.unlink()
    index.mkdir()
    proc = deploy_process(w, tmp_path, "v2")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("release-console: error: history "), err
    assert w.version("a") == "v1"


KILLED_MID_RELEASE = """
import os, signal, sys
from console.config import load
from console.history import Ledger
ledger = Ledger.for_config(load(sys.argv[1]))
ledger.start_release("r-killed", version="v2", targets=["a", "b"])
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_mid_release(config_path: Path) -> None:
    """A console that started release `r-killed` (a, b) in the fleet's ledger and was
    killed before it recorded anything else."""
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_RELEASE, str(config_path)],
                          timeout=60, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_session_reconciles_as_it_opens_whoever_opens_it(world):
    """No front end calls reconcile: opening the one `Session` closes what a killed
    console left open, and tells it as a warning."""
    from console.engine import Engine
    from console.session import Session
    w = world(["a", "b"])
    w.deploy_everywhere("v1")
    killed_mid_release(w.config_path)
    assert not releases(w.config)["r-killed"].finished
    heard: list[str] = []
    engine = Engine(w.config)
    try:
        with Session(w.config, engine, on_warning=heard.append) as session:
            assert [r.id for r in session.reconciled] == ["r-killed"]
    finally:
        engine.close()
    record = releases(w.config)["r-killed"]
    assert record.finished and all(c.reconciled for c in record.clusters), record
    assert any("release r-killed was left unfinished" in text for text in heard), heard
