"""`release-console check --tag T [--clusters SEL]`: the pre-flight of a release, alone.

Runs every pre-flight check (concurrently across clusters) and prints a table of the
results. Touches nothing. Exit 0 when every check passes, 2 when any fails.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from console.cli.deploy_cmd import add_selection_flags, load_config, request_from


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add `check`."""
    parser = subparsers.add_parser("check", parents=[common],
                                   help="run the pre-flight checks of a release")
    add_selection_flags(parser, tag_required=True)
    parser.add_argument("--json", action="store_true", help="results as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks; 0 all passed, 2 some failed."""
    from console.engine import Engine
    config = load_config(args)
    engine = Engine(config)
    try:
        report = engine.preflight(request_from(args))
    finally:
        engine.close()
    if args.json:
        print(json.dumps({"ok": report.ok, "results": [
            {"cluster": r.cluster, "check": r.check, "ok": r.ok, "detail": r.detail}
            for r in report.results]}, indent=2))
    else:
        print(report.table())
        print("pre-flight passed" if report.ok else
              f"pre-flight failed: {len(report.failures)} check(s) failed")
    return 0 if report.ok else 2
