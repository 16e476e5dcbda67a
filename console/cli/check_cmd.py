"""`release-console check [--tag T] [--clusters SEL] [--build]`: the pre-flight of a release, alone.

Without `--tag`, the default tag (short commit + build number) is used and printed;
a missing image with `app.build.command` set is built with `--build`, else suggested.

Runs every pre-flight check (concurrently across clusters) and prints a table of the
results, then what the fleet file allowed a cluster's credentials to do beyond token,
certificate or basic auth over verified TLS (a program run, a token fetched, TLS
verification off), named per cluster. Touches nothing. Exit 0 when every check passes,
2 when any fails.
"""

from __future__ import annotations

import argparse
import json

from console.cli.deploy_cmd import (add_selection_flags, choose_tag, load_config, offer_build,
                                    request_from)
from console.cli.flags import add_all_cpus, add_build, add_json, one_cpu_unless_asked


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`check`'s own arguments (its help texts are in `console.cli.commands`)."""
    add_selection_flags(parser)
    add_build(parser)
    add_json(parser, "results as JSON")
    add_all_cpus(parser)


def run(args: argparse.Namespace) -> int:
    """Run the checks; 0 all passed, 2 some failed."""
    from console.credentials import allowances_in_use
    from console.engine import Engine
    config = load_config(args)
    tag, defaulted = choose_tag(args, config)
    if defaulted or args.build:
        offer_build(config, tag, args.build)
    one_cpu_unless_asked(args, config)
    engine = Engine(config)
    try:
        # No session here (`check` records nothing), so it asks who acts itself: the
        # freeze check names who overrides.
        from dataclasses import replace

        from console.session import operator_name
        report = engine.preflight(replace(request_from(args, tag), operator=operator_name()))
    finally:
        engine.close()
    checked = {r.cluster for r in report.results}
    allowed = {cid: notes for cid, notes in allowances_in_use().items() if cid in checked}
    if args.json:
        print(json.dumps({"ok": report.ok, "results": [
            {"cluster": r.cluster, "check": r.check, "ok": r.ok, "detail": r.detail}
            for r in report.results], "allowed": allowed}, indent=2))
    else:
        print(report.table())
        for cluster, notes in sorted(allowed.items()):
            for note in notes:
                print(f"allowed: cluster {cluster!r}: credentials {note}")
        print("pre-flight passed" if report.ok else
              f"pre-flight failed: {len(report.failures)} check(s) failed")
    return 0 if report.ok else 2
