"""The Helm driver's rollbacks beyond the done-when canary, on the simulator and the lab:
a first install that fails is `helm uninstall`ed (no Deployment, no Helm records left,
the next release a fresh revision 1), and rolling back a whole release runs `helm
rollback` on each of its clusters."""

from __future__ import annotations

from console.config import load
from console.engine import Engine, ReleaseRequest

from .conftest import APP, approve


def helm_records(s, cid: str) -> list[str]:
    """Names of Helm's storage Secrets of the app's release in the story's namespace."""
    return [x["metadata"]["name"] for x in s.fleet.list(cid, "/secrets", s.ns(cid))
            if ((x.get("metadata") or {}).get("labels") or {}).get("owner") == "helm"]


def test_a_failed_first_install_is_uninstalled_and_a_whole_release_rolled_back(chart_stage):
    s = chart_stage
    engine = Engine(load(s.write()), grace=1.0)
    try:
        first = engine.run(ReleaseRequest(tag="v1-broken", clusters="c0"), approve)
        assert first.clusters[0].outcome == "rolled_back", first
        assert s.fleet.get("c0", "apps/deployments", s.ns("c0"), APP) is None
        assert helm_records(s, "c0") == []

        for tag in ("v1", "v2"):
            done = engine.run(ReleaseRequest(tag=tag, clusters="c0,c1", strategy="parallel"),
                              approve)
            assert done.outcome == "ok", done
        results = engine.rollback_release(done.release_id, by="test")
    finally:
        engine.close()
    assert sorted((r.cluster, r.outcome, r.rolled_back_to) for r in results) == [
        ("c0", "rolled_back", "v1"), ("c1", "rolled_back", "v1")]
    for cid in ("c0", "c1"):
        assert s.revisions(cid) == [(1, "superseded", "v1"), (2, "superseded", "v2"),
                                    (3, "deployed", "v1")], cid
        assert s.helm_json(cid, "history", APP)[-1]["description"] == "Rollback to 1"
        assert s.version(cid) == "v1"
