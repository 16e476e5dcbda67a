"""`release-console demo`: the console on the embedded local fleet.

Starts a `SimFleet` for the clusters of the fleet file (with their `sim:` settings),
writes a kubeconfig per simulated cluster and a rewritten fleet file pointing at them
into a private temporary directory, runs the console on that, and stops the fleet when
the console exits. Nothing outside the temporary directory is touched.

`--chart DIR` ships the demo app as a Helm chart instead of its manifests (the fleet
file's `app.manifests` replaced by `app.chart: DIR`), e.g. the example chart:
`release-console demo --chart deploy/charts/user-service` (needs helm: `make bin`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from console.cli import config_path
from console.cli.ui_cmd import add_theme_argument, run_console
from console.errors import UserError


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`demo`'s own arguments (its help texts are in `console.cli.commands`)."""
    add_theme_argument(parser)
    parser.add_argument("--chart", metavar="DIR",
                        help="ship the app as this Helm chart instead of its manifests "
                             "(e.g. deploy/charts/user-service; needs helm)")


def use_chart(fleet_file: Path, chart: str) -> None:
    """Rewrite `fleet_file` so the app ships as the chart directory `chart`."""
    import yaml

    from console.sim.fleetfile import read_yaml

    directory = Path(chart).expanduser().resolve()
    if not (directory / "Chart.yaml").is_file():
        raise UserError(f"--chart: {chart}: not a chart directory (no Chart.yaml)")
    doc = read_yaml(fleet_file) or {}   # keys as written: `notify: on:` stays "on"
    app = doc.setdefault("app", {})
    app.pop("manifests", None)
    app["chart"] = str(directory)
    fd = os.open(fleet_file, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(yaml.safe_dump(doc, sort_keys=False))


def run(args: argparse.Namespace) -> int:
    """Start the fleet, run the console on it, stop the fleet."""
    from console.config import load
    from console.sim import SimFleet

    source = Path(config_path(args))
    if not source.is_file():
        raise UserError(f"{source}: no such fleet file (use --config FILE)")
    with tempfile.TemporaryDirectory(prefix="release-console-demo-") as tmp:
        os.chmod(tmp, 0o700)  # the kubeconfigs inside carry the simulator's tokens
        fleet = SimFleet.from_config(source)
        fleet.start()
        try:
            rewritten = fleet.write_kubeconfigs(Path(tmp), config_path=source)
            if getattr(args, "chart", None):
                use_chart(rewritten, args.chart)
            return run_console(load(rewritten), getattr(args, "theme", None))
        finally:
            fleet.stop()
