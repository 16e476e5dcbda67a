"""`release-console rbac CLUSTER`: the least-privilege manifests an admin applies once.

Prints YAML documents separated by `---`: the cluster's Namespace, the console's
ServiceAccount, a Role and RoleBinding in that namespace, and a read-only ClusterRole and
binding for nodes, each rule with a comment saying why. Pipe it to `kubectl apply -f -`.
"""

from __future__ import annotations

import argparse



def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`rbac`'s own arguments (its help texts are in `console.cli.commands`)."""
    parser.add_argument("cluster", metavar="CLUSTER", help="cluster id from the fleet file")


def run(args: argparse.Namespace) -> int:
    """Print the manifests; exit 2 (UserError) for an unknown cluster or a bad fleet file."""
    from console.cli import config_path
    from console.config import load
    from console.rbac import manifests

    config = load(config_path(args))
    print(manifests(config.cluster(args.cluster), config), end="")
    return 0
