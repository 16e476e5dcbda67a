"""`rollback CLUSTER` never moves a cluster forward to a version that was aborted or rolled
back there (issue 11, item 14): it goes to the version the cluster ran, healthy, before
its current one arrived, as the ledger records it; with no record, or on drift, it
refuses and asks for `--to`; `--undo` is kubectl's meaning. Through the CLI against the
simulated fleet, with real `kubectl` for the hand-made change."""

from __future__ import annotations

import pytest

from console.cli import main
from console.engine import Engine, GateAnswer, GateDecision, ReleaseRequest
from console.session import Session
from tests.integration.test_status_matrix import kubectl_set_image

CANARY = {"canary": {"waves": [["s1"], ["p1"]], "gates": True}}


@pytest.fixture
def aborted_at_the_gate(world):
    """v1.4 then v1.5 released (recorded) everywhere; then v1.6 reached s1, and the
    release was aborted at the gate with a rollback: s1 is back on v1.5, and kubectl's
    previous revision there is v1.6."""
    w = world(["s1", "p1", "u1"], strategies=CANARY, seed=14)
    config = str(w.config_path)
    for tag in ("v1.4", "v1.5"):
        assert main(["deploy", "--config", config, "--tag", tag, "--clusters", "s1,p1",
                     "--strategy", "canary", "--yes"]) == 0
    engine = Engine(w.config, grace=0.5)
    try:
        with Session(w.config, engine):
            result = engine.run(ReleaseRequest(tag="v1.6", clusters="s1,p1",
                                               strategy="canary"),
                                lambda _req: GateAnswer(GateDecision.ABORT, rollback=True,
                                                        by="test"))
    finally:
        engine.close()
    assert [(c.cluster, c.outcome) for c in result.clusters] == \
        [("s1", "rolled_back"), ("p1", "skipped")]
    assert (w.version("s1"), w.version("p1")) == ("v1.5", "v1.5")
    return w


def test_rollback_goes_back_to_the_version_before_not_to_the_aborted_one(
        aborted_at_the_gate, capsys):
    w = aborted_at_the_gate
    config = str(w.config_path)
    capsys.readouterr()
    # Before: kubectl's previous revision - v1.6, the version aborted there.
    assert main(["rollback", "s1", "--yes", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "roll back s1 from v1.5 to v1.4 (the version it ran, healthy, before v1.5" in out
    assert "s1: rolled_back v1.5 -> v1.4" in out
    assert w.version("s1") == "v1.4"
    # Again: v1.5 was just rolled back there, v1.6 aborted there, and nothing healthy
    # ran before v1.4: refused, nothing touched.
    assert main(["rollback", "s1", "--yes", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "no version that ran there, healthy, before v1.4" in err and "--to V" in err
    assert w.version("s1") == "v1.4"
    # Without a terminal the confirmation is needed, and it names both versions.
    assert main(["rollback", "p1", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "roll back p1 from v1.5 to v1.4" in err and "--yes" in err
    assert w.version("p1") == "v1.5"


def test_undo_is_kubectls_previous_revision_and_says_so(aborted_at_the_gate, capsys):
    w = aborted_at_the_gate
    capsys.readouterr()
    assert main(["rollback", "s1", "--undo", "--yes", "--config", str(w.config_path)]) == 0
    out = capsys.readouterr().out
    assert "roll back s1 from v1.5 to v1.6 (the previous revision, as kubectl rollout undo)" \
        in out
    assert w.version("s1") == "v1.6"


def test_no_record_or_drift_is_refused_and_asks_for_to(aborted_at_the_gate, capsys,
                                                      tmp_path):
    w = aborted_at_the_gate
    config = str(w.config_path)
    # u1 got its version past the ledger (the engine alone): nothing recorded there.
    w.deploy_everywhere("v0.9", ["u1"])
    capsys.readouterr()
    assert main(["rollback", "u1", "--yes", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "cluster 'u1'" in err and "no record" in err and "--to V" in err
    assert w.version("u1") == "v0.9"
    # p1 changed by hand: the ledger did not put what runs there.
    kubectl_set_image(w.config_path.parent / "p1.yaml", tmp_path / "kc", "p1", "hotfix")
    assert main(["rollback", "p1", "--yes", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "runs hotfix, but the release ledger last recorded v1.5" in err
    assert "--to V" in err and w.version("p1") == "hotfix"
    # Named explicitly, it goes: last-good is the newest healthy version but the current.
    assert main(["rollback", "p1", "--to", "last-good", "--yes", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "roll back p1 from hotfix to v1.5 (its last good version" in out
    assert w.version("p1") == "v1.5"
    # last-good on s1 (v1.5 now) is v1.4: healthy there, and not the current version.
    assert main(["rollback", "s1", "--to", "last-good", "--yes", "--config", config]) == 0
    assert "roll back s1 from v1.5 to v1.4" in capsys.readouterr().out
    assert w.version("s1") == "v1.4"
