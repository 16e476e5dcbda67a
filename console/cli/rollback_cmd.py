"""`release-console rollback`: put one cluster, or every cluster a release reached, back.

    release-console rollback CLUSTER [--yes]            # the version it ran before (ledger)
    release-console rollback CLUSTER --to V [--yes]     # version V
    release-console rollback CLUSTER --to last-good     # the newest other healthy version
    release-console rollback CLUSTER --undo [--yes]     # kubectl rollout undo's revision
    release-console rollback --release ID [--yes]       # every cluster release ID reached

Without `--to`, the target is the version the cluster ran, healthy, before its current
version arrived, as the release ledger records it - never one that failed or was rolled
back there (`console.engine.rollback_choice`); with no ledger record for the cluster, or
when it runs what the ledger did not put there (drift), the command refuses (exit 2) and
asks for `--to`. The confirmation names both versions; it is asked on a terminal unless
`--yes`, and without a terminal `--yes` is required. If the cluster runs another version
by the time the rollback starts, nothing is done (exit 2). Every rollback is recorded in
the release ledger. Exit 0 when every rollback succeeded, 1 when one failed, 2 for bad
input, a refusal, or (for a chart) a missing helm binary - nothing touched.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from console.cli.deploy_cmd import load_config, warn
from console.cli.flags import add_all_cpus, one_cpu_unless_asked
from console.session import Session
from console.errors import UserError, ValidationError


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`rollback`'s own arguments (its help texts are in `console.cli.commands`)."""
    parser.add_argument("cluster", nargs="?", metavar="CLUSTER", help="the cluster to roll back")
    parser.add_argument("--to", metavar="V", help="the version to go to (default: the "
                                                  "version the cluster ran, healthy, before "
                                                  "its current one, from the release "
                                                  "ledger); `last-good`: the newest other "
                                                  "version the ledger recorded healthy there")
    parser.add_argument("--undo", action="store_true",
                        help="go to the previous revision, as `kubectl rollout undo` (which "
                             "may be a version that failed or was rolled back there)")
    parser.add_argument("--release", metavar="ID", help="roll back every cluster this "
                                                        "release reached")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_all_cpus(parser)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ValidationError(f"{question}: confirmation needed; pass --yes")
    print(f"{question}? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise ValidationError("not confirmed; nothing done")


def ledger_releases(config: Any, cluster_id: str) -> list[Any]:
    """The release ledger's releases of `cluster_id`, oldest first (`UserError` when the
    ledger cannot be opened: nothing is done)."""
    from console.history import Ledger
    ledger = Ledger.for_config(config)
    try:
        return ledger.releases(cluster=cluster_id)
    finally:
        ledger.close()


def all_releases(config: Any) -> list[Any]:
    """Every release of the app in the ledger, oldest first (`UserError` when the ledger
    cannot be opened)."""
    from console.history import Ledger
    ledger = Ledger.for_config(config)
    try:
        return ledger.releases()
    finally:
        ledger.close()


def run(args: argparse.Namespace) -> int:
    """Roll back; 0 ok, 1 a rollback failed."""
    from console.engine import Engine, Outcome
    from console.engine.rollback_choice import LAST_GOOD, UNDO
    from console.kube.helm import require_helm
    if bool(args.cluster) == bool(args.release):
        raise ValidationError("rollback: give either a CLUSTER or --release ID")
    if args.release and (args.to or args.undo):
        raise ValidationError("--to/--undo: apply to one cluster, not to --release")
    if args.to and args.undo:
        raise ValidationError("--to and --undo: give one of them")
    config = load_config(args)
    # A chart's rollback runs helm: a missing one is exit 2 before anything is asked,
    # locked or recorded (the engine refuses too, for the TUI's rollback key).
    require_helm(config)
    one_cpu_unless_asked(args, config)     # as deploy: the same threads, one per cluster
    engine = Engine(config)
    try:
        plan = None
        releases: list[Any] = []
        if args.release:
            question = f"roll back every cluster release {args.release} reached"
            # For the digest the ledger recorded per cluster: without a ledger each
            # cluster still goes back to its previous version (by its tag).
            try:
                releases = all_releases(config)
            except UserError as exc:
                print(f"release-console: warning: {exc}; the rollback is not pinned to "
                      "recorded digests", file=sys.stderr, flush=True)
        else:
            cluster_id = config.cluster(args.cluster).id
            to = UNDO if args.undo else args.to
            if to in (None, LAST_GOOD):
                releases = ledger_releases(config, cluster_id)
            elif to == UNDO:
                releases = []
            else:
                # Only for the digest the ledger recorded for that version: without a
                # ledger the named version is still rolled back to (by its tag).
                try:
                    releases = ledger_releases(config, cluster_id)
                except UserError as exc:
                    print(f"release-console: warning: {exc}; --to {to} is not pinned to "
                          "a recorded digest", file=sys.stderr, flush=True)
                    releases = []
            plan = engine.plan_rollback(cluster_id, to, releases)
            question = plan.question()
        if args.yes:
            print(question, flush=True)     # what is done, in the job's log
        _confirm(question, args.yes)
        with Session(config, engine, on_warning=warn) as session:
            if plan is None:
                results = engine.rollback_release(args.release, by=session.operator,
                                                  releases=releases)
            else:
                # --undo: the engine picks kubectl's revision again (the same, unless the
                # cluster changed - which `expect_from` refuses).
                results = [engine.rollback(plan.cluster,
                                           None if plan.how == UNDO else plan.to_version,
                                           by=session.operator,
                                           expect_from=plan.from_version,
                                           digest=plan.digest)]
    finally:
        engine.close()
    for r in results:
        detail = f" - {r.error}" if r.error else ""
        print(f"{r.cluster}: {r.outcome} {r.from_version or '-'} -> "
              f"{r.rolled_back_to or r.to_version or '-'}{detail}")
    return 0 if all(r.outcome in (Outcome.ROLLED_BACK, Outcome.SKIPPED) for r in results) else 1
