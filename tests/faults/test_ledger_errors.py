"""The ledger failing around a release: refused before it starts (and recorded as never
started), a warning after it started - the release's own exit code stands."""

from __future__ import annotations

from console.engine import ReleaseRequest
from console.events import Kind
from console.history import Ledger
from tests.faults.conftest import recorded_engine, releases


def break_index(ledger: Ledger) -> None:
    """Make every later commit of `ledger` fail (its Git index becomes a directory)."""
    index = ledger.path / ".git" / "index"
    index.unlink()
    index.mkdir()


def mend_index(ledger_path) -> None:
    index = ledger_path / ".git" / "index"
    index.rmdir()


def test_a_release_whose_start_cannot_be_committed_ends_not_started(world, capsys):
    w = world(["a", "b"])
    w.deploy_everywhere("v1")
    with recorded_engine(w) as engine:
        ledger = engine.listeners[0].ledger
        break_index(ledger)
        result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert result.exit_code == 2 and "could not record the release start" in result.message
    assert not w.recorder.of(Kind.CLUSTER_STARTED)
    assert {w.version(c) for c in ("a", "b")} == {"v1"}
    mend_index(ledger.path)
    # The next console start: nothing left open to reconcile, the release reads as
    # refused before it started - never `interrupted`.
    again = Ledger.for_config(w.config)
    try:
        assert again.unfinished() == []
    finally:
        again.close()
    record = releases(w.config)[result.release_id]
    assert (record.outcome, record.clusters) == ("not_started", ())
    with recorded_engine(w) as engine:
        assert engine.run(ReleaseRequest(tag="v2"), w.approve).exit_code == 0
    err = capsys.readouterr().err
    assert "left unfinished" not in err
    assert releases(w.config)[result.release_id].outcome == "not_started"


def test_a_ledger_failing_after_the_release_started_is_a_warning(world):
    w = world(["a"])
    w.deploy_everywhere("v1")
    with recorded_engine(w) as engine:
        ledger = engine.listeners[0].ledger

        def break_once_started(event):
            if event.kind is Kind.CLUSTER_STARTED:
                break_index(ledger)

        engine.add_listener(break_once_started)
        result = engine.run(ReleaseRequest(tag="v2"), w.approve)
    # The release ran and succeeded: its exit code is the release's; the ledger's trouble
    # is a one-line warning (`deploy` prints `listener_errors` as warnings), and nothing
    # was raised out of `recorded`.
    assert result.exit_code == 0 and w.version("a") == "v2"
    problems = [e for e in engine.listener_errors if "history repository" in e]
    assert problems and all("\n" not in e and "cannot commit" in e for e in problems), problems
    # The records are on disk: the next start commits them.
    mend_index(ledger.path)
    assert releases(w.config)[result.release_id].outcome == "ok"
