"""`release-console history`: who released what, where, when, and how it ended.

    release-console history [--cluster C] [--app A] [--since 7d] [--json]
    release-console history --sync      # push records a failed push left behind
    release-console history --drills [--json]   # the rollback drills (`drill`)

Reads the Git ledger (`app.history.path`, default `.release-history/` beside the fleet
file). `--json` prints one release per line (the `Release.to_json()` object). `--sync`
fetches and merges the remote's records and pushes the local ones: exit 0 when the
remote has everything (or no remote is set), 1 when the push failed. `--drills` lists
the rollback drills instead - never mixed with releases (`--json`: the ledger's lines).
A release let through open freeze windows is marked `[freeze override]`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from console.cli.flags import add_json
from console.events import Outcome


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`history`'s own arguments (its help texts are in `console.cli.commands`)."""
    parser.add_argument("--cluster", metavar="C", help="only releases that targeted C")
    parser.add_argument("--app", metavar="A",
                        help="another app recorded in the same ledger ('*' for all)")
    parser.add_argument("--since", metavar="WHEN",
                        help="only since WHEN: 30m, 6h, 7d, 2w, 2026-11-01 or an ISO time")
    add_json(parser, "one JSON object per release")
    parser.add_argument("--drills", action="store_true",
                        help="the rollback drills (release-console drill) instead of releases")
    parser.add_argument("--sync", action="store_true",
                        help="merge the remote's records and push the local ones")


def run(args: argparse.Namespace) -> int:
    """List the ledger, or sync it with its remote."""
    from console.cli.deploy_cmd import load_config
    from console.cli.output import out
    from console.errors import UserError
    from console.history import Ledger, parse_since

    since = parse_since(args.since) if args.since else None
    config = load_config(args)
    ledger = Ledger.for_config(config)
    try:
        if args.sync:
            result = ledger.sync()
            out(result.message)
            return 0 if result.ok else 1
        if args.drills:
            return _drills(ledger.drills(), args.json)
        releases = ledger.history(cluster=args.cluster, app=args.app, since=since)
    finally:
        ledger.close()
    known = [c.id for c in config.clusters]
    if args.cluster and args.cluster not in known and not releases:
        # Not in the fleet file and never recorded: a typo, not an empty history.
        raise UserError(f"{config.source or config.path}: unknown cluster {args.cluster!r} "
                        f"(clusters: {', '.join(known)})")
    if args.json:
        for release in releases:
            if not out(json.dumps(release.to_json(), separators=(",", ":"))):
                break   # the reader has gone (`| head`)
        return 0
    if not releases:
        out("no releases recorded" + (" matching the filters" if (
            args.cluster or args.app or since) else f" in {ledger.path}"))
        return 0
    rows = [("WHEN", "RELEASE", "VERSION", "BY", "OUTCOME", "CLUSTERS")]
    for release in releases:
        version = release.version if release.kind == "release" else \
            f"{release.kind} -> {release.version}"
        if args.app == "*":
            version = f"{release.app} {version}"
        if release.freeze_override:
            version += " [freeze override]"
        clusters = " ".join(_cluster_text(c) for c in release.clusters) or \
            ",".join(release.targets)
        rows.append((release.start.replace("T", " ").rstrip("Z"), release.id, version,
                     release.operator or "-", release.outcome or "unfinished", clusters))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        if not out("  ".join([*(cell.ljust(width) for cell, width in zip(row[:5], widths)),
                              row[5]]).rstrip()):
            break
    return 0


def _drills(drills: list[dict[str, Any]], as_json: bool) -> int:
    """Print the recorded drills: JSON lines, or one line each."""
    from console.cli.output import out
    if not drills:
        out("no drills recorded")
        return 0
    for drill in drills:
        if as_json:
            line = json.dumps(drill, separators=(",", ":"))
        else:
            timed = " ".join(
                f"{c.get('cluster')}=detect {_secs(c.get('detect_s'))}/rollback "
                f"{_secs(c.get('rollback_s'))}" + ("" if c.get("ok") else "(NOT OK)")
                for c in drill.get("clusters") or () if c.get("detect_s") is not None
                or not c.get("ok"))
            line = (f"{str(drill.get('start', '')).replace('T', ' ').rstrip('Z')}  "
                    f"{drill.get('id')}  {drill.get('tag')}  {drill.get('strategy')}  "
                    f"{drill.get('operator') or '-'}  "
                    f"{'passed' if drill.get('ok') else 'FAILED'}  {timed}").rstrip()
        if not out(line):
            break
    return 0


def _secs(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}s"


def _cluster_text(outcome: Any) -> str:
    """`prod-eu=healthy`, `prod-us=rolled_back(->1.2)`, `c=failed: error excerpt`."""
    text = f"{outcome.cluster}={outcome.outcome}"
    if outcome.outcome == Outcome.ROLLED_BACK and outcome.rolled_back_to:
        text += f"(->{outcome.rolled_back_to})"
    elif outcome.outcome == Outcome.INTERRUPTED and outcome.version:
        text += f"(runs {outcome.version})"
    return text
