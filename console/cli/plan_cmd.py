"""`release-console plan`: what a release would do, cluster by cluster; touches nothing.

Prints per cluster its place in the order, its wave (and the gate before it), the
version it runs now (read from the cluster) and the version it would get. Exit 0, or 2
for bad input (an unknown cluster, group or glob, a bad order or strategy). Without
`--tag` the default tag (short commit + build number) is shown, when there is one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap

from console.cli.deploy_cmd import add_selection_flags, choose_tag, load_config, request_from
from console.cli.flags import add_json
from console.errors import UserError


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`plan`'s own arguments (its help texts are in `console.cli.commands`)."""
    add_selection_flags(parser)
    add_json(parser, "the plan as JSON")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not look up the digest the tag would be pinned to")


def run(args: argparse.Namespace) -> int:
    """Print the plan with live versions."""
    from console.engine import Engine
    from console.names import validate_tag
    config = load_config(args)
    if args.tag:
        validate_tag(args.tag, "--tag")
        tag: str | None = args.tag
    else:
        try:
            tag, _ = choose_tag(args, config)
        except UserError as exc:   # a plan is still useful without a version
            print(f"release-console: no default tag ({exc})", file=sys.stderr)
            tag = None
    engine = Engine(config)
    try:
        request = request_from(args, tag or "")
        plan = engine.plan(request)
        statuses = {s.cluster: s for s in engine.status(plan.targets)}
    finally:
        engine.close()
    # The digest a release of the tag would pin every cluster to (one registry HEAD).
    from console.engine.pinning import resolve
    pin = resolve(config, tag, request.pin) if tag else None
    if pin is not None and pin.check is not None and not pin.check.ok:
        print(f"release-console: warning: {pin.check.detail}", file=sys.stderr)
    # An unreachable cluster's error is long: the table shows a numbered mark and the
    # whole error follows the table, wrapped, never cut.
    errors = [(cid, s.error or "unreachable") for cid, s in statuses.items() if not s.reachable]
    marks = {cid: f"? [{n}]" for n, (cid, _) in enumerate(errors, 1)}
    live = {cid: (s.version if s.reachable else marks[cid]) for cid, s in statuses.items()}
    if args.json:
        data = plan.to_json()
        data["clusters"] = [{"cluster": row.cluster, "wave": row.wave, "position": row.position,
                             "gate_before": row.gate_before,
                             "live_version": statuses[row.cluster].version,
                             "reachable": statuses[row.cluster].reachable,
                             "new_version": tag} for row in plan.rows()]
        data["digest"] = pin.digest if pin is not None else None
        print(json.dumps(data, indent=2))
        return 0
    print(plan.describe(live=live, new=tag or "(no --tag)"))
    if pin is not None and pin.digest:
        print(f"{tag} is pinned to {pin.digest}: every wave runs these bits")
    width = max(40, shutil.get_terminal_size((100, 24)).columns)
    for n, (cid, error) in enumerate(errors, 1):
        print(textwrap.fill(f"[{n}] {cid}: {error}", width=width, subsequent_indent="    ",
                            break_long_words=False, break_on_hyphens=False))
    return 0
