"""The ledger on real Git: records written, committed as they happen, pushed, never lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from console.history import Ledger, Operator, parse_since
from tests.history.conftest import APP, git, reject_pushes, remote_records


def test_a_release_is_committed_before_any_cluster_and_pushed_at_the_end(
        make_ledger, bare_remote: Path) -> None:
    ledger = make_ledger(remote=bare_remote)
    ledger.start_release("r1", version="3f2a9c1-42", image="reg/user-service",
                         strategy="serial", targets=("staging", "prod-eu"), operator="alice")
    # Committed (not only written) before the engine may touch a cluster.
    head = git(ledger.path, "log", "-1", "--format=%an|%s")
    assert head.strip() == "alice|release user-service 3f2a9c1-42 -> staging,prod-eu (started)"
    assert '"type":"release"' in git(ledger.path, "show", f"HEAD:history/{APP}.jsonl")

    ledger.touch_cluster("r1", "staging", from_version="3f2a9c1-41", to_version="3f2a9c1-42")
    ledger.record_cluster("r1", "staging", "healthy", duration=4.2)
    ledger.touch_cluster("r1", "prod-eu", from_version="3f2a9c1-41", to_version="3f2a9c1-42")
    ledger.record_cluster("r1", "prod-eu", "healthy", duration=6.0)
    result = ledger.finish_release("r1", "ok", exit_code=0)

    assert result.ok and result.pushed, result.message
    subject = git(bare_remote, "log", "-1", "--format=%an <%ae>|%s", "main").strip()
    assert subject == ("alice <alice@example.com>|"
                       "release user-service 3f2a9c1-42 -> staging,prod-eu (ok)")
    records = remote_records(bare_remote)
    assert [r["type"] for r in records] == ["release", "touch", "cluster", "touch", "cluster",
                                            "end"]
    staging = records[2]
    assert (staging["cluster"], staging["outcome"], staging["from_version"],
            staging["to_version"], staging["duration"]) == (
        "staging", "healthy", "3f2a9c1-41", "3f2a9c1-42", 4.2)
    assert records[-1]["outcome"] == "ok" and records[-1]["exit_code"] == 0
    human = git(bare_remote, "show", "main:deployment-history.log").splitlines()
    assert len(human) == 1
    assert human[0].endswith(" - user-service - 3f2a9c1-42 - staging,prod-eu - ok by alice")
    # Nothing is left uncommitted.
    assert git(ledger.path, "status", "--porcelain") == ""


def test_every_cluster_outcome_is_committed_as_it_happens(make_ledger) -> None:
    ledger = make_ledger()
    ledger.start_release("r1", version="1.1", targets=("a", "b"))
    ledger.record_cluster("r1", "a", "failed", error="pods not ready")
    ledger.flush()
    committed = git(ledger.path, "show", f"HEAD:history/{APP}.jsonl")
    assert '"cluster":"a","outcome":"failed"' in committed
    assert "pods not ready" in committed


def test_a_rejected_push_keeps_the_record_and_a_later_push_delivers_it(
        make_ledger, bare_remote: Path) -> None:
    ledger = make_ledger(remote=bare_remote)
    ledger.start_release("r1", version="1.0", targets=("staging",))
    ledger.record_cluster("r1", "staging", "healthy")
    assert ledger.finish_release("r1", "ok").pushed

    reject_pushes(bare_remote)
    ledger.start_release("r2", version="1.1", targets=("staging",))
    ledger.record_cluster("r2", "staging", "healthy")
    result = ledger.finish_release("r2", "ok")
    assert not result.ok and not result.pushed
    assert "history is frozen for maintenance" in result.message
    # Kept locally, committed, and the remote still has only r1.
    assert "release user-service 1.1 -> staging (ok)" in git(ledger.path, "log", "--format=%s")
    assert {r.get("release", r.get("id")) for r in remote_records(bare_remote)} == {"r1"}

    # A failed sync still keeps everything; once the remote accepts, sync delivers r2.
    assert not ledger.sync().ok
    reject_pushes(bare_remote, reject=False)
    synced = ledger.sync()
    assert synced.ok and synced.pushed, synced.message
    assert {r.get("release", r.get("id")) for r in remote_records(bare_remote)} == {"r1", "r2"}
    assert git(bare_remote, "rev-parse", "main") == git(ledger.path, "rev-parse", "HEAD")


def test_a_push_that_never_reached_the_refs_is_not_taken_for_behind(
        make_ledger, tmp_path: Path) -> None:
    """Whether to merge and push again is decided by `git push --porcelain`'s ref status,
    not by words in git's messages: a remote gone missing (whose path happens to say
    "fetch first") fails at once with git's reason - never "still behind" after eight
    rounds of merging."""
    import shutil
    remote = tmp_path / "fetch first" / "history.git"
    remote.parent.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True, timeout=30)
    git(remote, "symbolic-ref", "HEAD", "refs/heads/main")
    ledger = make_ledger(remote=remote)
    ledger.start_release("r1", version="1.0", targets=("staging",))
    assert ledger.finish_release("r1", "ok").pushed
    shutil.rmtree(remote)
    ledger.start_release("r2", version="1.1", targets=("staging",))
    result = ledger.finish_release("r2", "ok")
    assert not result.ok and not result.pushed
    assert "does not appear to be a git repository" in result.message, result.message
    assert "still behind" not in result.message


def test_the_next_release_push_also_delivers_an_earlier_unpushed_one(
        make_ledger, bare_remote: Path) -> None:
    ledger = make_ledger(remote=bare_remote)
    reject_pushes(bare_remote)
    ledger.start_release("r1", version="1.0", targets=("a",))
    ledger.record_cluster("r1", "a", "healthy")
    assert not ledger.finish_release("r1", "ok").ok
    reject_pushes(bare_remote, reject=False)
    ledger.start_release("r2", version="1.1", targets=("a",))
    ledger.record_cluster("r2", "a", "healthy")
    assert ledger.finish_release("r2", "ok").pushed
    ids = [r["id"] for r in remote_records(bare_remote) if r["type"] == "release"]
    assert ids == ["r1", "r2"]


def test_two_consoles_sharing_a_remote_merge_their_records(
        make_ledger, bare_remote: Path) -> None:
    first = make_ledger("first", remote=bare_remote)
    first.start_release("r1", version="1.0", targets=("a",))
    first.record_cluster("r1", "a", "healthy")
    assert first.finish_release("r1", "ok").pushed
    # A second machine clones the shared history when its ledger is created.
    second = make_ledger("second", remote=bare_remote, operator=Operator("bob", "bob@x"))
    assert [r.id for r in second.releases()] == ["r1"]
    first.start_release("r2", version="1.1", targets=("a",))
    first.record_cluster("r2", "a", "healthy")
    assert first.finish_release("r2", "ok").pushed
    second.start_release("r3", version="1.1", targets=("b",), operator="bob")
    second.record_cluster("r3", "b", "healthy")
    pushed = second.finish_release("r3", "ok")   # refused as non-fast-forward, merged, pushed
    assert pushed.ok and pushed.pushed, pushed.message
    ids = [r["id"] for r in remote_records(bare_remote) if r["type"] == "release"]
    assert sorted(ids) == ["r1", "r2", "r3"]
    assert first.sync().ok
    assert sorted(r.id for r in first.releases()) == ["r1", "r2", "r3"]
    assert first.matrix({"a": "1.1", "b": "1.1"})[1].recorded_by == "bob"


def test_operator_defaults_to_git_config_else_user(no_git_identity, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "h", APP)
    try:
        assert ledger.operator.name == "carol"
        ledger.start_release("r1", version="1.0", targets=("a",))
        assert git(ledger.path, "log", "-1", "--format=%an").strip() == "carol"
    finally:
        ledger.close()
    git_home = Path(os.environ["HOME"])
    (git_home / ".gitconfig").write_text("[user]\n\tname = Dana Ops\n\temail = dana@example.com\n")
    ledger = Ledger(tmp_path / "h", APP)
    try:
        assert ledger.operator == Operator("Dana Ops", "dana@example.com")
        # The CLI passes the login name ($USER): the person's git identity signs.
        ledger.start_release("r2", version="1.1", targets=("a",), operator="carol")
        assert git(ledger.path, "log", "-1", "--format=%an <%ae>").strip() == \
            "Dana Ops <dana@example.com>"
        # A CI build user is recorded as such.
        ledger.start_release("r3", version="1.2", targets=("a",), operator="jenkins-bot")
        assert git(ledger.path, "log", "-1", "--format=%an").strip() == "jenkins-bot"
        assert Operator.parse("Eve <eve@example.com>") == Operator("Eve", "eve@example.com")
    finally:
        ledger.close()


def test_the_ledger_is_its_own_repository_inside_a_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    ledger = Ledger(project / ".release-history", APP)
    try:
        ledger.start_release("r1", version="1.0", targets=("a",))
        assert git(project / ".release-history", "rev-parse", "--show-toplevel").strip() == \
            str((project / ".release-history").resolve())
        # The project's repository got no commit.
        out = subprocess.run(["git", "-C", str(project), "log"], capture_output=True, text=True)
        assert out.returncode != 0
    finally:
        ledger.close()


def test_secrets_never_reach_the_records_or_commits(make_ledger) -> None:
    # The ledger is fed by events, which are scrubbed when made (`console.redact`).
    from console.events import Event, Kind
    from console.history import EventLedger
    ledger = make_ledger()
    listener = EventLedger(ledger)
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    error = (f"401 from https://deployer:hunter2@10.0.0.1:6443 with Authorization: Bearer "
             f"{token}; token: abcdef123456")
    for event in (Event(Kind.RELEASE_PLANNED, "r1", data={"version": "1.0", "targets": ["a"]}),
                  Event(Kind.RELEASE_STARTED, "r1"),
                  Event(Kind.CLUSTER_FAILED, "r1", "a", error, {"error": error}),
                  Event(Kind.RELEASE_FINISHED, "r1", data={"outcome": "failed"})):
        listener(event)
    everything = git(ledger.path, "log", "-p", "--all")
    for secret in ("hunter2", token, "abcdef123456"):
        assert secret not in everything
    assert "401 from https://***@10.0.0.1:6443" in everything


def test_parse_since() -> None:
    now = 1_790_000_000.0
    assert parse_since("2h", now) == "2026-09-21T12:13:20Z"
    assert parse_since("2026-11-01") == "2026-11-01T00:00:00Z"
    assert parse_since("2026-11-01T09:30:00+01:00") == "2026-11-01T08:30:00Z"
    import pytest

    from console.errors import ValidationError
    with pytest.raises(ValidationError, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_history_filters_by_cluster_app_and_time(make_ledger) -> None:
    ledger = make_ledger()
    ledger.start_release("r1", version="1.0", targets=("a", "b"))
    ledger.record_cluster("r1", "a", "healthy")
    ledger.record_cluster("r1", "b", "failed", error="boom")
    ledger.finish_release("r1", "failed")
    ledger.record_rollback("b", from_version="1.0", to_version="0.9", of_release="r1",
                           operator="bob")
    everything = ledger.history()
    assert [(r.kind, r.outcome) for r in everything] == [("release", "failed"),
                                                       ("rollback", "ok")]
    only_a = ledger.history(cluster="a")
    assert [r.id for r in only_a] == ["r1"]
    assert [c.cluster for c in only_a[0].clusters] == ["a"]
    only_b = ledger.history(cluster="b")
    assert [c.outcome for r in only_b for c in r.clusters] == ["failed", "healthy"]
    assert only_b[1].of_release == "r1" and only_b[1].operator == "bob"
    assert ledger.history(since="2999-01-01T00:00:00Z") == []
    assert len(ledger.history(since="1h")) == 2
    assert ledger.history(app="other-app") == []
    assert [r.app for r in ledger.history(app="*")] == [APP, APP]


KILLED_CONSOLE = textwrap.dedent("""
    import os, signal, sys
    from console.history import Ledger, Operator
    ledger = Ledger(sys.argv[1], "user-service", operator=Operator("alice", "a@x"))
    ledger.start_release("r9", version="2.0", targets=["a", "b", "c"])
    ledger.touch_cluster("r9", "a", from_version="1.0", to_version="2.0")
    ledger.record_cluster("r9", "a", "healthy", duration=3.0)
    ledger.touch_cluster("r9", "b", from_version="1.0", to_version="2.0")
    os.kill(os.getpid(), signal.SIGKILL)   # mid-rollout of b, before any commit of a or b
""")


def test_a_killed_console_leaves_nothing_lost_and_reconcile_closes_the_release(
        tmp_path: Path, bare_remote: Path) -> None:
    path = tmp_path / "work"
    proc = subprocess.run([sys.executable, "-c", KILLED_CONSOLE, str(path)], timeout=60,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    # The start was committed; a and b's lines were written but not committed.
    assert "(started)" in git(path, "log", "-1", "--format=%s")
    assert git(path, "status", "--porcelain").strip()

    ledger = Ledger(path, APP, remote=str(bare_remote), operator=Operator("bob", "b@x"))
    try:
        assert git(path, "status", "--porcelain") == ""          # recovered on open
        [open_release] = ledger.unfinished()
        assert (open_release.id, open_release.touched) == ("r9", ("a", "b"))
        written = ledger.reconcile("r9", {"a": "2.0", "b": "2.0", "c": "1.0"})
        assert [(w.cluster, w.outcome, w.version, w.reconciled) for w in written] == [
            ("b", "interrupted", "2.0", True), ("c", "skipped", None, True)]
        assert ledger.unfinished() == []
        [release] = ledger.history()
        assert release.outcome == "interrupted"
        assert [(c.cluster, c.outcome) for c in release.clusters] == [
            ("a", "healthy"), ("b", "interrupted"), ("c", "skipped")]
        rows = {row.cluster: row for row in ledger.matrix({"a": "2.0", "b": "2.0", "c": "1.0"})}
        assert rows["b"].recorded == "2.0" and not rows["b"].drift
        assert rows["b"].last_good is None
        assert rows["c"].recorded is None and rows["c"].drift
        assert "reconcile" not in git(path, "log", "-1", "--format=%s")
        assert git(path, "log", "-1", "--format=%s").strip() == \
            "release user-service 2.0 -> a,b,c (interrupted)"
        assert [r["outcome"] for r in remote_records(bare_remote) if r["type"] == "end"] == [
            "interrupted"]
    finally:
        ledger.close()


def test_a_half_written_line_is_ignored_and_the_next_line_starts_fresh(make_ledger) -> None:
    ledger = make_ledger()
    ledger.start_release("r1", version="1.0", targets=("a",))
    with open(ledger.file, "a") as handle:
        handle.write('{"type":"cluster","release":"r1","clu')     # a writer killed mid-line
    ledger.record_cluster("r1", "a", "healthy")
    ledger.finish_release("r1", "ok")
    lines = ledger.file.read_text().splitlines()
    assert lines[1] == '{"type":"cluster","release":"r1","clu'
    assert json.loads(lines[2])["outcome"] == "healthy"
    assert ledger.history()[0].outcome_of("a").outcome == "healthy"
    assert ledger.last_good("a") == "1.0"


def test_manual_rollbacks_are_written_at_once_and_pushed_together(
        make_ledger, bare_remote: Path) -> None:
    hook = bare_remote / "hooks" / "post-receive"
    pushes = bare_remote.parent / "pushes.log"
    hook.write_text(f"#!/bin/sh\necho push >> {pushes}\n")
    hook.chmod(0o755)
    ledger = make_ledger(remote=bare_remote)
    results: list = []
    ids = [ledger.record_rollback(f"c{n:02d}", from_version="2.0", to_version="1.0",
                                  of_release="r1", operator="carol", on_pushed=results.append)
           for n in range(20)]
    # Written (and readable) before any commit or push has happened.
    assert [r.id for r in ledger.history()] == ids
    ledger.close()
    assert len(results) == 20 and all(r.ok and r.pushed for r in results)
    on_remote = [r["id"] for r in remote_records(bare_remote) if r["type"] == "release"]
    assert on_remote == ids
    assert 1 <= len(pushes.read_text().splitlines()) < 20     # coalesced
    human = git(bare_remote, "show", "main:deployment-history.log").splitlines()
    assert len(human) == 20 and human[0].endswith(
        " - rollback user-service - 1.0 - c00 - ok by carol")


RUNNING_CONSOLE = textwrap.dedent("""
    import sys, time
    from console.history import Ledger, Operator
    ledger = Ledger(sys.argv[1], "user-service", operator=Operator("alice", "a@x"))
    ledger.start_release("r7", version="3.0", targets=["a"])
    print("started", flush=True)
    sys.stdin.read()            # alive until the test ends it
""")


def test_a_release_another_live_console_runs_is_not_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-c", RUNNING_CONSOLE, str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        ledger = Ledger(path, APP)
        try:
            assert ledger.unfinished() == []          # its console is alive
            proc.kill()
            proc.wait(30)
            [release] = ledger.unfinished()            # now it is gone
            assert release.id == "r7"
        finally:
            ledger.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_outcomes_that_arrive_close_together_share_a_commit(make_ledger) -> None:
    """A commit costs ~7 ms of CPU: outcomes arriving every 20 ms (a big release's
    clusters ending) are folded into a commit at most every COMMIT_GAP s, each line on
    disk at once; a flush commits the rest.

    The 20 ms between outcomes is the input (the arrival pattern whose commits are
    counted), not a wait for a result: the bound is on the time the arrivals really took,
    so a slow machine stretches the pattern and the bound with it (docs/architecture.md
    lists it among the fixed waits)."""
    import time

    from console.history.ledger import COMMIT_GAP

    ledger = make_ledger()
    ledger.start_release("r1", version="v2", image="reg/user-service", strategy="parallel",
                         targets=tuple(f"c{i}" for i in range(25)), operator="alice")
    first = int(git(ledger.path, "rev-list", "--count", "HEAD"))
    started = time.monotonic()
    for i in range(25):
        ledger.record_cluster("r1", f"c{i}", "healthy", duration=1.0)
        assert f'"cluster":"c{i}"' in ledger.file.read_text()   # on disk at once
        time.sleep(0.02)     # the arrival pattern: 25 outcomes over 0.5 s
    ledger.flush()
    took = time.monotonic() - started     # 0.5 s, longer on a busy machine
    commits = int(git(ledger.path, "rev-list", "--count", "HEAD")) - first
    assert 1 <= commits <= took / COMMIT_GAP + 2, (commits, took)
    shown = git(ledger.path, "show", f"HEAD:history/{APP}.jsonl")
    assert all(f'"cluster":"c{i}"' in shown for i in range(25))
