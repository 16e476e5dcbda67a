"""`release-console control RELEASE_ID ACTION [CLUSTER]`: steer a running release.

    release-console control RELEASE_ID pause|resume|abort|approve|reject [--rollback]
    release-console control RELEASE_ID skip|retry CLUSTER

The request goes through the release's control lease on its clusters (see
`console.engine.steering`), so it works from any machine whose credentials (the
fleet file's) have the app's rights on every cluster of the release: the request is
written onto the release's Lease on each of its clusters, and the release refuses one
that is missing anywhere (rights on one cluster never steer a release across others),
as it refuses one whose sender the cluster does not confirm (SelfSubjectReview). A
target that cannot be read (unreachable) refuses approve, skip, retry and resume;
pause, abort and reject only reduce what the release does and are taken on the
reachable targets, naming the unreachable ones. Exit codes: 0 the release acknowledged the
action; 2 no such running release, nothing to act on (the message says why: no gate
waiting, the cluster started already, ...), or bad input; 1 the release did not
answer within `--timeout`, or whether it runs cannot be told (no Lease that could be read
names it, and some could not be read: `steering_client.Unreadable`).
"""

from __future__ import annotations

import argparse
import sys

from console.cli.deploy_cmd import load_config
from console.cli.flags import add_timeout

ACTIONS = ("pause", "resume", "abort", "approve", "reject", "skip", "retry")


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`control`'s own arguments (its help texts are in `console.cli.commands`)."""
    parser.add_argument("release_id", metavar="RELEASE_ID")
    parser.add_argument("action", choices=ACTIONS, metavar="ACTION",
                        help=", ".join(ACTIONS))
    parser.add_argument("cluster", nargs="?", default=None, metavar="CLUSTER",
                        help="the cluster (skip, retry)")
    parser.add_argument("--rollback", action="store_true",
                        help="abort: also roll back every cluster the release reached")
    add_timeout(parser, 30.0, "seconds to wait for the release's answer")


def run(args: argparse.Namespace) -> int:
    """Send the request; the exit code says how the release answered."""
    from console.cli.output import out
    from console.engine import Engine
    from console.engine.steering_client import NoAnswer, send
    from console.errors import UserError
    if args.rollback and args.action != "abort":
        raise UserError("--rollback goes with abort")
    config = load_config(args)
    engine = Engine(config)
    try:
        try:
            ack = send(engine, args.release_id, args.action, args.cluster,
                       rollback=args.rollback, timeout=args.timeout)
        except NoAnswer as exc:
            print(f"release-console: error: {exc}", file=sys.stderr)
            return 1
    finally:
        engine.close()
    who = ack.by if ack.confirmed else f"{ack.by} (not confirmed by the cluster)"
    if not ack.ok:
        print(f"release-console: {'refused' if ack.refused else 'nothing to act on'}: "
              f"{ack.detail}", file=sys.stderr)
        return 2
    out(f"release {args.release_id}: {ack.detail} (as {who})")
    return 0
