"""`release-console history`: the ledger read back from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.cli import main
from console.history import Ledger, Operator
from tests.history.conftest import git, reject_pushes, remote_records

REPO = Path(__file__).resolve().parents[2]


def write_fleet(tmp_path: Path, remote: Path | None = None) -> Path:
    """A two-cluster clusters.yaml whose ledger lives beside it (and pushes to `remote`)."""
    history = f"\n  history: {{remote: {remote}}}" if remote else ""
    path = tmp_path / "clusters.yaml"
    path.write_text(f"""\
app:
  name: user-service
  image: registry.example.com/apps/user-service
  manifests: {REPO / 'deploy' / 'user-service'}{history}
clusters:
  - id: staging
    credentials: {{kubeconfig: ./staging.yaml}}
  - id: prod-eu
    groups: [prod]
    credentials: {{kubeconfig: ./prod-eu.yaml}}
""")
    return path


def record_two_releases(ledger: Ledger) -> None:
    ledger.start_release("r1", version="1.0", targets=("staging", "prod-eu"), operator="alice")
    ledger.record_cluster("r1", "staging", "healthy")
    ledger.record_cluster("r1", "prod-eu", "rolled_back", from_version="0.9",
                          rolled_back_to="0.9", error="pods not ready")
    ledger.finish_release("r1", "failed", exit_code=1)
    ledger.start_release("r2", version="1.1", targets=("staging",), operator="bob")
    ledger.record_cluster("r2", "staging", "healthy")
    ledger.finish_release("r2", "ok", exit_code=0)


def test_history_lists_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fleet = write_fleet(tmp_path)
    ledger = Ledger(tmp_path / ".release-history", "user-service",
                    operator=Operator("alice", "a@x"))
    record_two_releases(ledger)
    ledger.close()

    assert main(["history", "--config", str(fleet)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["WHEN", "RELEASE", "VERSION", "BY", "OUTCOME", "CLUSTERS"]
    assert lines[1].split()[2:] == ["r1", "1.0", "alice", "failed", "staging=healthy",
                                    "prod-eu=rolled_back(->0.9)"]
    assert lines[2].split()[2:] == ["r2", "1.1", "bob", "ok", "staging=healthy"]

    assert main(["history", "--config", str(fleet), "--cluster", "prod-eu", "--json"]) == 0
    [only] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only["id"] == "r1" and [c["cluster"] for c in only["clusters"]] == ["prod-eu"]
    assert only["clusters"][0]["error"] == "pods not ready"

    assert main(["history", "--config", str(fleet), "--since", "1h"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["history", "--config", str(fleet), "--app", "billing"]) == 0
    assert capsys.readouterr().out.strip() == "no releases recorded matching the filters"


def test_a_bad_since_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fleet = write_fleet(tmp_path)
    assert main(["history", "--config", str(fleet), "--since", "last tuesday"]) == 2
    assert "--since 'last tuesday'" in capsys.readouterr().err


def test_history_sync_delivers_what_a_failed_push_left(
        tmp_path: Path, bare_remote: Path, capsys: pytest.CaptureFixture) -> None:
    fleet = write_fleet(tmp_path, remote=bare_remote)
    reject_pushes(bare_remote)
    ledger = Ledger(tmp_path / ".release-history", "user-service", remote=str(bare_remote),
                    operator=Operator("alice", "a@x"))
    record_two_releases(ledger)
    ledger.close()
    assert main(["history", "--config", str(fleet), "--sync"]) == 1
    assert "pre-receive hook declined" in capsys.readouterr().out
    reject_pushes(bare_remote, reject=False)
    assert main(["history", "--config", str(fleet), "--sync"]) == 0
    assert capsys.readouterr().out.startswith("pushed to ")
    assert [r["id"] for r in remote_records(bare_remote) if r["type"] == "release"] == [
        "r1", "r2"]
    assert git(bare_remote, "rev-parse", "main") == git(tmp_path / ".release-history",
                                                         "rev-parse", "HEAD")
