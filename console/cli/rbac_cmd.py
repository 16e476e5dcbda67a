"""`release-console rbac CLUSTER`: the least-privilege manifests an admin applies once.

Prints YAML documents separated by `---`: the cluster's Namespace, the console's
ServiceAccount, a Role and RoleBinding in that namespace, and a read-only ClusterRole and
binding for nodes, each rule with a comment saying why. Pipe it to `kubectl apply -f -`.
"""

from __future__ import annotations

import argparse
from typing import Any

from console.cli.flags import command


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add `rbac`."""
    parser = command(subparsers, common, "rbac", run,
                     help="print the least-privilege RBAC manifests for one cluster")
    parser.add_argument("cluster", metavar="CLUSTER", help="cluster id from the fleet file")


def run(args: argparse.Namespace) -> int:
    """Print the manifests; exit 2 (UserError) for an unknown cluster or a bad fleet file."""
    from console.cli import config_path
    from console.config import load
    from console.rbac import manifests

    config = load(config_path(args))
    print(manifests(config.cluster(args.cluster), config), end="")
    return 0
