"""docs/events.md is the `--json` stream's reference: every kind and every field a real
release emits is listed there, under its kind."""

from __future__ import annotations

import json
import re
from pathlib import Path

from console.cli.event_printer import EventPrinter
from console.engine import GateAnswer, GateDecision, ReleaseControl, ReleaseRequest
from console.events import Kind

from .test_release import CANARY

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
ALWAYS = {"ts", "kind", "release", "cluster", "message"}


def documented() -> dict[str, set[str]]:
    """kind -> the field names its table row names (in backticks)."""
    rows: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `([a-z_]+)` \| (.*?) \| .* \|$", line)
        if match and match.group(1) in {k.value for k in Kind}:
            rows[match.group(1)] = set(re.findall(r"`([a-z_]+)`", match.group(2)))
    return rows


def test_every_kind_is_documented() -> None:
    assert set(documented()) == {k.value for k in Kind}


def test_every_field_of_a_real_release_is_documented(world, tmp_path) -> None:
    # A canary release with a paused start, a failing cluster rolled back, and a manual
    # rollback: most kinds and fields of the stream, as `deploy --json` prints them.
    w = world(["w1", "w2", "w3", "w4"], strategies=CANARY)
    w.deploy_everywhere("v1")
    w.fleet.set_faults("w3", never_pull=["v2"])
    out = tmp_path / "stream.jsonl"
    with out.open("w") as stream:
        engine = w.engine()
        printer = EventPrinter(as_json=True, stream=stream)
        engine.add_listener(printer)
        control = ReleaseControl()
        control.pause(by="ann")
        control.resume(by="ann")
        engine.run(ReleaseRequest(tag="v2", strategy="canary"),
                   lambda _r: GateAnswer(GateDecision.APPROVE, by="ann"), control)
        engine.rollback("w1", "v1", by="ann")
        printer.close()            # printed by its own thread
    docs = documented()
    seen: dict[str, set[str]] = {}
    for line in out.read_text().splitlines():
        event = json.loads(line)
        seen.setdefault(event["kind"], set()).update(set(event) - ALWAYS)
    missing = {kind: fields - docs[kind] for kind, fields in seen.items()
               if fields - docs.get(kind, set())}
    assert missing == {}, f"fields the stream carries but docs/events.md does not name: {missing}"
    assert {"release_planned", "cluster_failed", "cluster_rolled_back", "gate_decided",
            "release_finished"} <= set(seen)
