"""Each ledger commit names the records it carries: a record written while the background
committer takes its batch is committed under its own subject, never folded silently into
the commit of the line before it (the release's `end` once landed in the commit
"... b rolled_back", and no commit carried the end's subject)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from console.history.repository import STARTED, Subject, pick_subject
from tests.history.conftest import APP, git


def commits_with_records(path: Path) -> list[tuple[str, list[dict]]]:
    """(message, records the commit adds to the app's record file) per commit, oldest first."""
    out = []
    for sha in git(path, "rev-list", "--reverse", "HEAD").split():
        message = git(path, "log", "-1", "--format=%B", sha)
        diff = git(path, "show", "--format=", "--unified=0", sha, "--",
                   f"history/{APP}.jsonl")
        added = [json.loads(line[1:]) for line in diff.splitlines()
                 if line.startswith("+{")]
        out.append((message, added))
    return out


def expected_subject(rec: dict) -> str | None:
    """The part of the commit message a record with a subject must bring (None: none)."""
    if rec["type"] == "release":
        return "(started)"
    if rec["type"] == "cluster":
        return f": {rec['cluster']} {rec['outcome']}"
    if rec["type"] == "end":
        return f"({rec['outcome']})"
    return None   # touch/bake lines ride along with the next commit


def test_a_record_written_as_the_committer_takes_its_batch_keeps_its_subject(
        make_ledger, monkeypatch) -> None:
    ledger = make_ledger()
    ledger.start_release("r1", version="v2", targets=("a", "b"), operator="alice")
    real_locked = ledger.repository.locked
    armed = threading.Event()
    armed.set()
    wrote: list[BaseException | None] = []

    def engine_writes_b() -> None:
        try:
            ledger.record_cluster("r1", "b", "rolled_back", error="pods not ready")
            wrote.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            wrote.append(exc)

    @contextmanager
    def locked() -> Iterator[None]:
        # The ordering that lost a subject, every time: the committer (with a's outcome
        # queued) goes for the Git lock, and just then the engine's thread writes b's.
        if threading.current_thread().name.startswith("ledger-commit") and armed.is_set():
            armed.clear()
            writer = threading.Thread(target=engine_writes_b)
            writer.start()
            writer.join(30)
            assert not writer.is_alive(), "b's outcome could not be written in 30 s"
        with real_locked():
            yield

    monkeypatch.setattr(ledger.repository, "locked", locked)
    ledger.record_cluster("r1", "a", "healthy")
    ledger.flush()
    assert wrote == [None] and not armed.is_set()
    ledger.finish_release("r1", "failed", exit_code=1, push=False)

    commits = commits_with_records(ledger.path)
    carried = [(rec["type"], rec.get("cluster")) for _, added in commits for rec in added]
    assert carried == [("release", None), ("cluster", "a"), ("cluster", "b"), ("end", None)]
    for message, added in commits:
        for rec in added:
            want = expected_subject(rec)
            assert want is None or want in message, (
                f"the commit carrying {rec['type']} {rec.get('cluster') or ''} does not "
                f"name it ({want!r}): {message!r}")
    # The release's end is the last commit, under its own subject.
    assert git(ledger.path, "log", "-1", "--format=%s").strip() == \
        "release user-service v2 -> a,b (failed)"


# How steer and gate records carry `by` when the console itself decided (a local identity):
# its text ends in ")" like a release's start or end subject does.
STEER_BY = "system:serviceaccount:x:admin (alice)"


def test_the_subject_is_chosen_by_the_record_kind_not_by_how_its_text_ends() -> None:
    started = Subject("release user-service v2 -> a,b (started)", STARTED)
    steer = Subject(f"steer user-service r-1: pause by {STEER_BY}")
    assert pick_subject([started, steer]) == started
    assert pick_subject([steer, started]) == started


def test_a_steer_by_a_local_identity_does_not_name_the_commit_it_rides_in(make_ledger) -> None:
    ledger = make_ledger()
    ledger.start_release("r1", version="v2", targets=("a", "b"), operator="alice")
    # Hold Git's lock so the committer takes both records in one batch, as it does when
    # a steer and a cluster's outcome come within the commit gap.
    with ledger.repository.locked():
        ledger.record_cluster("r1", "a", "healthy")
        ledger.record_steer("r1", "pause", STEER_BY)
    ledger.flush()
    message = git(ledger.path, "log", "-1", "--format=%B")
    subject, _, body = message.partition("\n")
    assert subject == "release user-service v2: a healthy (+1 more records)"
    assert f"steer user-service r1: pause by {STEER_BY}" in body
