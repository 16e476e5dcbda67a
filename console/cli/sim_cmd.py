"""`release-console sim`: serve the local fleet in the foreground.

    release-console sim --config clusters.yaml --kubeconfig-dir ~/.kube/release-console
    release-console sim --count 20 --kubeconfig-dir /tmp/fleet --readiness-delay 0.5

Writes DIR/<id>.yaml per cluster and DIR/clusters.yaml (the fleet pointing at the
simulator), prints one line containing `ready` once every port listens, and runs until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from console.cli.serving import add_serving_arguments, readiness_overrides, stop_on_signals
from console.errors import UserError


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`sim`'s own arguments (its help texts are in `console.cli.commands`)."""
    parser.add_argument("--count", type=int, metavar="N",
                        help="serve N clusters c0..cN-1 instead of the fleet file's clusters")
    add_serving_arguments(parser, "<cluster>.yaml kubeconfigs and clusters.yaml")


def run(args: argparse.Namespace) -> int:
    """Start the fleet, write the files, print `ready`, wait for a signal."""
    import yaml

    from console.cli import config_path
    from console.sim import SimFleet

    overrides = readiness_overrides(args)
    if args.count is not None:
        if args.count < 1:
            raise UserError("sim: --count must be at least 1")
        fleet = SimFleet([f"c{n}" for n in range(args.count)], **overrides)
    else:
        path = Path(config_path(args))
        if not path.is_file():
            raise UserError(f"sim: fleet file {path} not found (use --config FILE or --count N)")
        try:
            fleet = SimFleet.from_config(path, **overrides)
        except (ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: {exc}") from None
        if not fleet.ids:
            raise UserError(f"{path}: clusters: no cluster to simulate")
    stop = stop_on_signals()
    with fleet:
        written = fleet.write_kubeconfigs(args.kubeconfig_dir)
        for cid in fleet.ids:
            print(f"  {cid:<24} {fleet.url(cid)}")
        print(f"  {'registry':<24} {fleet.registry_url}")
        print(f"ready: {len(fleet.ids)} simulated clusters; fleet file {written}", flush=True)
        while not stop.wait(0.5):
            pass
    print("sim: stopped", file=sys.stderr, flush=True)
    return 0
