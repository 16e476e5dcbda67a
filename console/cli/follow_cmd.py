"""`release-console follow [RELEASE_ID]`: print a release another process runs, live.

    release-console follow [RELEASE_ID] [--interval S] [--once] [--json]

Without RELEASE_ID, the release running on the fleet now. Reads the ledger (pulled from
`history.remote` each round when one is set), the release Leases and the clusters
(`console.engine.follow`) - never the process that runs it - again as soon as a watch
sees its Lease, the app's Deployment or the ledger file change (`ChangeWatch`; at the
latest every `--interval` s), and prints a line per
cluster whose phase or progress changed, the gate when one waits (with the `control`
command that approves it), and the end. Exit codes: 0 followed to its end (or printed
once with `--once`); 1 its console stopped without recording the end; 2 no such
release (or none running).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from console.cli.deploy_cmd import load_config
from console.cli.flags import add_json


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`follow`'s own arguments (its help texts are in `console.cli.commands`)."""
    parser.add_argument("release_id", nargs="?", default=None, metavar="RELEASE_ID",
                        help="default: the release running on the fleet now")
    parser.add_argument("--interval", type=float, default=10.0, metavar="S",
                        help="seconds between readings when nothing changes (default 10; "
                             "a change on the clusters or in the ledger is read at once)")
    parser.add_argument("--once", action="store_true",
                        help="print the state once and exit")
    add_json(parser, "one JSON object per change")


def run(args: argparse.Namespace) -> int:
    """Follow until the release ends."""
    from console.cli.output import out
    from console.engine import Engine
    from console.engine.follow import ChangeWatch, running_release, synced_snapshot
    from console.errors import UserError
    from console.history import Ledger
    config = load_config(args)
    engine = Engine(config)
    ledger = Ledger.for_config(config)
    warned = False

    def warn(message: str) -> None:
        nonlocal warned
        if not warned:
            print(f"release-console: warning: history remote: {message}", file=sys.stderr)
            warned = True

    watch: ChangeWatch | None = None

    def emit(record: dict[str, Any], line: str) -> None:
        out(json.dumps(record) if args.json else line)

    try:
        rid = args.release_id or running_release(engine)
        if rid is None:
            raise UserError("no release is running on this fleet's clusters")
        shown: dict[str, str] = {}
        head_shown = gate_shown = paused_shown = bake_shown = None
        while True:
            view = synced_snapshot(engine, rid, ledger, warn)
            if not view.recorded and not view.running:
                raise UserError(f"no release {rid} in the ledger or on the clusters")
            head = (f"release {rid}: {view.version or '?'} ({view.strategy or '?'}) by "
                    f"{view.operator or '?'}")
            if head != head_shown:
                emit({"release": rid, "version": view.version, "strategy": view.strategy,
                      "operator": view.operator}, head)
                head_shown = head
            for line in view.clusters:
                if shown.get(line.cluster) != line.text():
                    shown[line.cluster] = line.text()
                    emit({"release": rid, "cluster": line.cluster, "phase": line.phase,
                          "ready": line.ready, "desired": line.desired,
                          "version": line.version}, f"  {line.text()}")
            paused = bool(view.steering.get("paused"))
            if paused != bool(paused_shown):
                emit({"release": rid, "paused": paused},
                     "  paused: no new cluster starts" if paused else "  resumed")
                paused_shown = paused
            bake = view.steering.get("bake")
            if bake != bake_shown:
                if bake:   # once per bake: a line a second would drown the rest
                    emit({"release": rid, "bake": bake}, f"  {view.bake_text(time.time())}")
                bake_shown = bake
            gate = view.gate_text()
            if gate != gate_shown:
                if gate:
                    emit({"release": rid, "gate": view.steering.get("gate")}, f"  {gate}")
                gate_shown = gate
            if view.outcome is not None:
                emit({"release": rid, "outcome": view.outcome},
                     f"release {rid}: {view.outcome}")
                return 0
            if not view.running and view.recorded:
                emit({"release": rid, "outcome": None},
                     f"release {rid}: its console stopped without recording an end "
                     "(the next start reconciles it)")
                return 1
            if args.once:
                return 0
            targets = tuple(line.cluster for line in view.clusters) or tuple(view.holders)
            if watch is None or watch.clusters != targets:
                if watch is not None:
                    watch.close()
                watch = ChangeWatch(engine, targets, str(ledger.file))
            watch.wait(max(0.2, args.interval))
    finally:
        if watch is not None:
            watch.close()
        ledger.close()
        engine.close()
