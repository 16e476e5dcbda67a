"""The record schema: every line says its version, and ledgers written before the
version field (schema 1: only `release` lines carried `"v"`) stay readable."""

from __future__ import annotations

import json
from pathlib import Path

from console.events import Outcome
from console.history import SCHEMA, Ledger
from tests.history.conftest import ALICE, APP, git

# A ledger as the console wrote it before schema 2 (lines copied from such a ledger): a
# release that ended, one rolled back on b, and one a killed console left open.
SCHEMA_1 = """\
{"type":"release","v":1,"id":"r-1","app":"user-service","kind":"release","version":"1.0","image":"reg/app:1.0","strategy":"serial","targets":["a","b"],"operator":"alice","operator_email":"alice@example.com","start":"2026-11-20T09:00:00Z","host":"old-host","pid":4242}
{"type":"touch","release":"r-1","cluster":"a","from_version":null,"to_version":"1.0","ts":"2026-11-20T09:00:01Z"}
{"type":"cluster","release":"r-1","cluster":"a","outcome":"healthy","from_version":null,"to_version":"1.0","version":"1.0","good":true,"duration":3.2,"error":"","rolled_back_to":null,"operator":"alice","ts":"2026-11-20T09:00:04Z"}
{"type":"touch","release":"r-1","cluster":"b","from_version":null,"to_version":"1.0","ts":"2026-11-20T09:00:05Z"}
{"type":"cluster","release":"r-1","cluster":"b","outcome":"healthy","from_version":null,"to_version":"1.0","version":"1.0","good":true,"duration":2.9,"error":"","rolled_back_to":null,"operator":"alice","ts":"2026-11-20T09:00:08Z"}
{"type":"end","release":"r-1","outcome":"ok","exit_code":0,"end":"2026-11-20T09:00:08Z"}
{"type":"release","v":1,"id":"r-2","app":"user-service","kind":"release","version":"1.1","image":"reg/app:1.1","strategy":"serial","targets":["b"],"operator":"bob","operator_email":"bob@example.com","start":"2026-11-21T09:00:00Z","host":"old-host","pid":4243}
{"type":"touch","release":"r-2","cluster":"b","from_version":"1.0","to_version":"1.1","ts":"2026-11-21T09:00:01Z"}
{"type":"cluster","release":"r-2","cluster":"b","outcome":"failed","from_version":"1.0","to_version":"1.1","version":"1.1","good":false,"duration":9.0,"error":"ErrImagePull","rolled_back_to":null,"operator":"bob","ts":"2026-11-21T09:00:10Z"}
{"type":"cluster","release":"r-2","cluster":"b","outcome":"rolled_back","from_version":"1.0","to_version":"1.1","version":"1.0","good":true,"duration":9.0,"error":"ErrImagePull","rolled_back_to":"1.0","operator":"bob","ts":"2026-11-21T09:00:15Z"}
{"type":"end","release":"r-2","outcome":"failed","exit_code":1,"end":"2026-11-21T09:00:15Z"}
{"type":"release","v":1,"id":"r-3","app":"user-service","kind":"release","version":"1.2","image":"reg/app:1.2","strategy":"serial","targets":["a","b"],"operator":"alice","operator_email":"alice@example.com","start":"2026-11-22T09:00:00Z","host":"old-host","pid":4244}
{"type":"touch","release":"r-3","cluster":"a","from_version":"1.0","to_version":"1.2","ts":"2026-11-22T09:00:01Z"}
"""


def old_ledger(tmp_path: Path) -> Path:
    """A committed schema-1 ledger repository at tmp_path/old."""
    path = tmp_path / "old"
    (path / "history").mkdir(parents=True)
    (path / "history" / f"{APP}.jsonl").write_text(SCHEMA_1)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(path, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "old")
    return path


def test_a_schema_1_ledger_reads_as_before(tmp_path: Path) -> None:
    ledger = Ledger(old_ledger(tmp_path), APP, operator=ALICE)
    try:
        releases = {r.id: r for r in ledger.releases()}
        assert [r.outcome for r in releases.values()] == ["ok", "failed", None]
        assert releases["r-1"].operator == "alice"
        assert {c.cluster: c.outcome for c in releases["r-2"].clusters} == {"b": "rolled_back"}
        assert releases["r-2"].outcome_of("b").rolled_back_to == "1.0"
        rows = {row.cluster: row for row in ledger.matrix({"a": "1.2", "b": "1.0"})}
        assert (rows["a"].recorded, rows["a"].last_good, rows["a"].drift) == ("1.0", "1.0", True)
        assert (rows["b"].recorded, rows["b"].recorded_by) == ("1.0", "bob")
        assert ledger.last_good("b") == "1.0"
        # The release a killed console left open is found and closed as before.
        assert [r.id for r in ledger.unfinished()] == ["r-3"]
        ledger.reconcile("r-3", {"a": "1.2", "b": "1.0"})
        closed = ledger.releases(ids={"r-3"})[0]
        assert closed.outcome == "interrupted"
        assert {c.cluster: c.outcome for c in closed.clusters} == {
            "a": "interrupted", "b": "skipped"}
    finally:
        ledger.close()


def test_new_lines_carry_the_schema_version_beside_old_ones(tmp_path: Path) -> None:
    ledger = Ledger(old_ledger(tmp_path), APP, operator=ALICE)
    try:
        ledger.start_release("r-4", version="1.3", targets=("a",))
        ledger.touch_cluster("r-4", "a", from_version="1.0", to_version="1.3")
        ledger.record_cluster("r-4", "a", "healthy")
        ledger.finish_release("r-4", "ok", exit_code=0)
        lines = ledger.file.read_text().splitlines()
        new = [json.loads(line) for line in lines[len(SCHEMA_1.splitlines()):]]
        assert [rec["type"] for rec in new] == ["release", "touch", "cluster", "end"]
        assert all(rec["v"] == SCHEMA == 2 for rec in new)
        # `type` stays first: the readers skip lines by their prefix.
        assert all(line.startswith('{"type":"') for line in lines)
        assert [r.id for r in ledger.releases()] == ["r-1", "r-2", "r-3", "r-4"]
        assert ledger.last_good("a") == "1.3"
    finally:
        ledger.close()


def test_outcomes_given_as_the_enum_are_written_as_the_strings_ledgers_always_had(
        tmp_path: Path) -> None:
    # The ledger decides by `Outcome` members; its lines keep schema 1's strings, so a
    # ledger written now reads the same to an older console.
    ledger = Ledger(old_ledger(tmp_path), APP, operator=ALICE)
    try:
        ledger.start_release("r-4", version="1.3", targets=("a", "b"))
        ledger.touch_cluster("r-4", "a", from_version="1.0", to_version="1.3")
        ledger.record_cluster("r-4", "a", Outcome.ROLLED_BACK, rolled_back_to="1.0")
        ledger.record_cluster("r-4", "b", Outcome.SKIPPED_BY_OPERATOR)
        ledger.finish_release("r-4", Outcome.FAILED, exit_code=1)
        ledger.record_rollback("a", from_version="1.0", to_version="1.2")
        ledger.flush()
        lines = ledger.file.read_text().splitlines()[len(SCHEMA_1.splitlines()):]
        ends = [(rec["type"], rec.get("cluster"), rec["outcome"], rec.get("version"),
                 rec.get("good")) for rec in map(json.loads, lines) if "outcome" in rec]
        assert ends == [("cluster", "a", "rolled_back", "1.0", False),
                        ("cluster", "b", "skipped_by_operator", None, False),
                        ("end", None, "failed", None, None),
                        ("cluster", "a", "healthy", "1.2", True),
                        ("end", None, "ok", None, None)]
        assert all('"outcome":"' in line for line in lines if '"outcome"' in line)
        log = (ledger.path / "deployment-history.log").read_text().splitlines()
        assert log[-2].endswith("- failed by alice") and " ok by " in log[-1], log[-2:]
    finally:
        ledger.close()
