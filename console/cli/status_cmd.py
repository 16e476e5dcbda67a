"""`release-console status [--json]`: the live version of the app on every cluster.

Each cluster is read concurrently with a short timeout; one that does not answer is
shown as unreachable and never holds up the others. Exit 0 whatever the versions.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from console.cli.deploy_cmd import load_config


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add `status`."""
    parser = subparsers.add_parser("status", parents=[common],
                                   help="live version per cluster")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the live versions."""
    from console.engine import Engine
    config = load_config(args)
    engine = Engine(config)
    try:
        statuses = engine.status()
    finally:
        engine.close()
    if args.json:
        print(json.dumps({"app": config.app.name,
                          "clusters": [asdict(s) for s in statuses]}, indent=2))
        return 0
    rows = [("CLUSTER", "VERSION", "REV", "READY", "RELEASE", "STATE")]
    for s in statuses:
        if s.reachable:
            state = "ok" if s.version is None or s.ready >= s.desired else "degraded"
            rows.append((s.cluster, s.version or "-", str(s.revision or "-"),
                         f"{s.ready}/{s.desired}" if s.version else "-",
                         s.release_id or "-", state if s.version else "not deployed"))
        else:
            rows.append((s.cluster, "?", "-", "-", "-", f"unreachable: {s.error}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join([*(c.ljust(w) for c, w in zip(r[:5], widths)), r[5]]).rstrip())
    return 0
