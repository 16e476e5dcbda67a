"""The engine's API types: light to import, outcomes that read as the strings they were."""

from __future__ import annotations

import json
import subprocess
import sys

from console.engine import ClusterResult, Outcome, ReleaseResult


def test_importing_the_api_loads_no_kubernetes_client() -> None:
    code = ("import sys, console.engine.api\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'"
            " or m.startswith('console.kube')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_outcomes_keep_the_strings_the_ledger_and_json_always_had() -> None:
    result = ClusterResult("staging", "rolled_back")
    assert result.outcome is Outcome.ROLLED_BACK
    assert json.dumps({"outcome": result.outcome}) == '{"outcome": "rolled_back"}'
    assert f"{Outcome.PREFLIGHT_FAILED}" == "preflight_failed"
    assert ReleaseResult("r-1", "ok", 0, (result,)).outcome is Outcome.OK
    assert {o.value for o in Outcome} == {
        "healthy", "failed", "rolled_back", "skipped", "interrupted", "skipped_by_operator",
        "ok", "stopped", "aborted", "preflight_failed", "not_started"}
