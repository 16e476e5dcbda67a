"""`release-console rollback`: put one cluster, or every cluster a release reached, back.

    release-console rollback CLUSTER [--to V] [--yes]   # previous revision, or version V
    release-console rollback CLUSTER --to last-good     # the ledger's last healthy version
    release-console rollback --release ID [--yes]       # every cluster release ID reached

Asks for confirmation on a terminal unless `--yes`; without a terminal `--yes` is
required. Every rollback is recorded in the release ledger. Exit 0 when every rollback succeeded, 1 when one failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from console.cli.deploy_cmd import load_config, recorded
from console.session import operator_name
from console.errors import ValidationError

LAST_GOOD = "last-good"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add `rollback`."""
    parser = subparsers.add_parser("rollback", parents=[common],
                                   help="roll back one cluster or a whole release")
    parser.add_argument("cluster", nargs="?", metavar="CLUSTER", help="the cluster to roll back")
    parser.add_argument("--to", metavar="V", help="the version to go to (default: the "
                                                  "previous revision); `last-good`: the last "
                                                  "version the release ledger recorded "
                                                  "healthy on that cluster")
    parser.add_argument("--release", metavar="ID", help="roll back every cluster this "
                                                        "release reached")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(func=run)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ValidationError(f"{question}: confirmation needed; pass --yes")
    print(f"{question}? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise ValidationError("not confirmed; nothing done")


def last_good(config: Any, cluster_id: str) -> str:
    """The ledger's last known-good version of the app on `cluster_id`; ValidationError
    when the ledger has none."""
    from console.history import Ledger
    ledger = Ledger.for_config(config)
    try:
        version = ledger.last_good(cluster_id)
    finally:
        ledger.close()
    if version is None:
        raise ValidationError(f"--to last-good: no known-good version of {config.app.name} "
                              f"recorded for cluster {cluster_id!r} in the release ledger "
                              f"({ledger.path}); name a version with --to V")
    return version


def run(args: argparse.Namespace) -> int:
    """Roll back; 0 ok, 1 a rollback failed."""
    from console.engine import Engine, Outcome
    if bool(args.cluster) == bool(args.release):
        raise ValidationError("rollback: give either a CLUSTER or --release ID")
    if args.release and args.to:
        raise ValidationError("--to: applies to one cluster, not to --release")
    config = load_config(args)
    to = args.to
    if args.cluster and to == LAST_GOOD:
        cluster_id = config.cluster(args.cluster).id
        to = last_good(config, cluster_id)
        print(f"last-good of {cluster_id} is {to} (from the ledger)", flush=True)
    if args.release:
        question = f"roll back every cluster release {args.release} reached"
    else:
        question = f"roll back {config.cluster(args.cluster).id} to " \
                   f"{to or 'its previous revision'}"
    _confirm(question, args.yes)
    engine = Engine(config)
    try:
        with recorded(config, engine):
            if args.release:
                results = engine.rollback_release(args.release, by=operator_name())
            else:
                results = [engine.rollback(args.cluster, to, by=operator_name())]
    finally:
        engine.close()
    for r in results:
        detail = f" - {r.error}" if r.error else ""
        print(f"{r.cluster}: {r.outcome} {r.from_version or '-'} -> "
              f"{r.rolled_back_to or r.to_version or '-'}{detail}")
    return 0 if all(r.outcome in (Outcome.ROLLED_BACK, Outcome.SKIPPED) for r in results) else 1
