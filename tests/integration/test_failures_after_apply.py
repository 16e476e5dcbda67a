"""Every failure after the apply is told and rolled back (issue 11, item 18): a cluster
whose API answers a write with 200 and a body that is not JSON (a misbehaving proxy), or
with JSON of the wrong shape (an unexpected exception in the deploy), is reported failed
and rolled back like any other failure - through the CLI, against the simulated fleet's
`bad_answer` fault."""

from __future__ import annotations

import json

import pytest

from console.cli import main
from console.history import Ledger


@pytest.mark.parametrize("body, says", [
    (None, "not JSON"),           # the fault's default: an HTML error page with status 200
    ("[]", "unexpected error"),   # JSON, but not an object: the deploy code trips over it
])
def test_a_bad_answer_after_the_apply_fails_the_cluster_and_rolls_it_back(world, capsys,
                                                                          body, says):
    w = world(["a", "b"], seed=18)
    w.deploy_everywhere("v1")
    faults = {"bad_answer": ["v2"]} | ({"bad_answer_body": body} if body else {})
    w.fleet.set_faults("b", **faults)
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v2", "--strategy",
                 "parallel", "--json"])
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines() if line]
    assert "Traceback" not in captured.err
    of_b = [e for e in events if e.get("cluster") == "b"]
    failed = [e for e in of_b if e["kind"] == "cluster_failed"]
    assert len(failed) == 1 and says in failed[0]["error"], of_b
    rolled = [e for e in of_b if e["kind"] == "cluster_rolled_back"]
    assert [e["ok"] for e in rolled] == [True], of_b
    end = events[-1]
    assert (end["kind"], end["outcome"], code) == ("release_finished", "failed", 1)
    # b was written (the apply was done), then put back; a went on to v2.
    assert w.version("b") == "v1" and w.version("a") == "v2"
    ledger = Ledger.for_config(w.config)
    try:
        release = ledger.releases(ids={end["release"]})[0]
    finally:
        ledger.close()
    outcome = release.outcome_of("b")
    assert (outcome.outcome, outcome.version, outcome.rolled_back_to) == \
        ("rolled_back", "v1", "v1")
    assert says in outcome.error
