"""Skip, retry and requeue in the console's own releases (issue 15 item 3), on the
simulator through the real engine and ledger: a cluster an operator skipped is never
touched and recorded `skipped_by_operator`; a failed cluster asked to be retried runs
again once the rest of its wave ended; a cluster removed from the fleet file during the
release is recorded as such and the wave goes on."""

from __future__ import annotations

import yaml

from console.config import load
from console.engine import ReleaseControl, ReleaseRequest
from console.events import Kind, Outcome
from console.history import Ledger
from console.session import Session


def release(w, control: ReleaseControl, tag: str, **request):
    engine = w.engine()
    try:
        with Session(w.config, engine):
            return engine.run(ReleaseRequest(tag=tag, **request), w.approve, control)
    finally:
        engine.close()


def ledger_outcomes(w, release_id: str) -> dict[str, str]:
    ledger = Ledger.for_config(load(w.config_path))
    try:
        record = next(r for r in ledger.releases() if r.id == release_id)
    finally:
        ledger.close()
    return {c.cluster: c.outcome for c in record.clusters}


def test_a_skipped_cluster_is_never_touched_and_recorded_skipped_by_operator(world):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    control = ReleaseControl()
    control.skip("b", by="alice")
    result = release(w, control, "v2", strategy="parallel", max_parallel=1)
    assert result.exit_code == 0, result
    by_cluster = {c.cluster: c for c in result.clusters}
    assert by_cluster["b"].outcome is Outcome.SKIPPED
    assert by_cluster["b"].error == "skipped_by_operator by alice"
    assert [w.version(c) for c in "abc"] == ["v2", "v1", "v2"]
    assert ledger_outcomes(w, result.release_id)["b"] == "skipped_by_operator"


def test_a_failed_cluster_retried_runs_again_once_its_wave_ended(world):
    w = world(["a", "b", "c"])
    w.deploy_everywhere("v1")
    # The operator fixes what broke and asks for a retry while the wave still runs.
    engine, control = w.fixed_and_retried("a", Kind.CLUSTER_ROLLED_BACK, by="bob")
    try:
        with Session(w.config, engine):
            result = engine.run(ReleaseRequest(tag="v2", strategy="parallel",
                                               max_failures="1"), w.approve, control)
    finally:
        engine.close()
    kinds = [(e.kind, e.cluster) for e in w.recorder.events]
    assert result.exit_code == 0, (result.message, result.clusters)
    assert [w.version(c) for c in "abc"] == ["v2"] * 3
    # The retry came after the rest of the wave (b and c) had ended.
    retried = kinds.index((Kind.STEERED, "a"))
    assert kinds.index((Kind.CLUSTER_HEALTHY, "b")) < retried
    assert kinds.index((Kind.CLUSTER_HEALTHY, "c")) < retried
    assert (Kind.CLUSTER_HEALTHY, "a") in kinds[retried:]
    assert w.recorder.of(Kind.STEERED)[0].data["by"] == "bob"
    assert ledger_outcomes(w, result.release_id)["a"] == "healthy"


def test_a_cluster_removed_from_the_fleet_file_mid_release_is_recorded_and_skipped(world):
    w = world(["a", "b", "c"])
    control = ReleaseControl()

    def remove_c(event) -> None:
        if event.kind is Kind.CLUSTER_STARTED and event.cluster == "a":
            doc = yaml.safe_load(w.config_path.read_text())
            doc["clusters"] = [c for c in doc["clusters"] if c["id"] != "c"]
            w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))

    engine = w.engine()
    engine.add_listener(remove_c)
    try:
        result = engine.run(ReleaseRequest(tag="v1", strategy="parallel", max_parallel=1),
                            w.approve, control)
    finally:
        engine.close()
    by_cluster = {c.cluster: c for c in result.clusters}
    assert result.exit_code == 0
    assert by_cluster["c"].outcome is Outcome.SKIPPED
    assert by_cluster["c"].error == "removed from the fleet file during the release"
    assert (w.version("a"), w.version("b"), w.version("c")) == ("v1", "v1", None)
