"""`release-console lab up`: real Kubernetes control planes on loopback, in the foreground.

    release-console lab up 3 --kubeconfig-dir /tmp/lab            # clusters c0, c1, c2
    release-console lab up --config clusters.yaml --kubeconfig-dir /tmp/lab

One kube-apiserver, kube-controller-manager, kube-scheduler and KWOK per cluster over one
shared etcd (see console/lab/fleet.py), built by `make bin`. Writes DIR/<id>.yaml admin
kubeconfigs and DIR/clusters.yaml (the fleet rewritten as `release-console sim` does),
component logs in DIR/logs/, prints one line containing `ready` once every cluster answers
and has Ready nodes, and stops every process it started on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from console.cli.flags import add_timeout
from console.cli.serving import add_serving_arguments, readiness_overrides, stop_on_signals
from console.errors import UserError


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`lab`'s own arguments (its help texts are in `console.cli.commands`)."""
    actions = parser.add_subparsers(dest="lab_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", parents=[common], help="start a lab and serve it until Ctrl-C",
                            description="Start N clusters (or one per clusters[] entry of --config) "
                                        "and serve them until SIGINT/SIGTERM.")
    up.add_argument("count", nargs="?", type=int, metavar="N",
                    help="clusters c0..cN-1 (default: one per cluster of the fleet file)")
    add_serving_arguments(up, "<cluster>.yaml kubeconfigs, clusters.yaml and logs/")
    up.add_argument("--etcd-per-cluster", action="store_true",
                    help="one etcd per cluster instead of one shared etcd (for comparison)")
    add_timeout(up, 240.0, "give up when the lab is not ready after S seconds")
    up.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the lab, write the files, print `ready`, wait for a signal, stop everything."""
    import yaml

    from console.cli import config_path
    from console.lab import LabError, LabFleet

    overrides = readiness_overrides(args)
    directory = Path(args.kubeconfig_dir).expanduser()
    path = Path(config_path(args))
    if args.count is not None:
        if args.count < 1:
            raise UserError("lab: N must be at least 1")
        if not path.is_file() and getattr(args, "config", None):
            raise UserError(f"lab: fleet file {path} not found")
        path = count_source(path if path.is_file() else None, args.count, directory)
    elif not path.is_file():
        raise UserError(f"lab: fleet file {path} not found (use --config FILE or N)")
    try:
        lab = LabFleet.from_config(path, directory, **overrides)
    except (ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: {exc}") from None
    lab.etcd_per_cluster = args.etcd_per_cluster
    if not lab.ids:
        raise UserError(f"{path}: clusters: no cluster to start")
    stop = stop_on_signals()
    print(f"lab: starting {len(lab.ids)} cluster(s)", flush=True)
    # On stderr: a directory named e.g. "ready-lab" must not put "ready" on stdout before
    # the `ready:` line (the contract scripts wait on).
    print(f"lab: logs in {directory.resolve() / 'logs'}", file=sys.stderr, flush=True)
    try:
        lab.start(timeout=args.timeout, progress=lambda line: print(line, flush=True), cancel=stop)
    except LabError as exc:
        print(f"release-console: error: {exc}", file=sys.stderr)
        return 130 if stop.is_set() else 1
    try:
        written = lab.write_kubeconfigs(directory)
        for cid in lab.ids:
            print(f"  {cid:<24} {lab.url(cid)}")
        print(f"  {'registry':<24} https://{lab.registry_host}")
        mem = lab.memory_bytes() / 2**20
        print(f"ready: {len(lab.ids)} real clusters in {lab.started_in:.1f} s, "
              f"{mem:.0f} MiB resident; fleet file {written}", flush=True)
        while not stop.wait(0.5):
            dead = [c for c in lab.children if not c.alive()]
            if dead:
                print(f"lab: {dead[0].name} exited (code {dead[0].popen.returncode}); "
                      f"log {dead[0].log}:\n{dead[0].tail()}", file=sys.stderr, flush=True)
                return 1
    finally:
        began = time.monotonic()
        lab.stop()
        killed = f" (SIGKILLed after the grace: {', '.join(lab.killed)})" if lab.killed else ""
        print(f"lab: stopped in {time.monotonic() - began:.1f} s{killed}", file=sys.stderr,
              flush=True)
    return 0


def count_source(source: Path | None, count: int, directory: Path) -> Path:
    """The fleet file for `lab up N`: clusters c0..cN-1 with the app, defaults and `sim:`
    settings of `source` (the fleet file, when there is one), written to DIR/lab-source.yaml.

    Its strategies name clusters that are not there, so they are left out, and so is the
    ledger path: releases to a scratch lab go to a ledger beside the rewritten file.
    """
    import yaml

    from console.sim.fleetfile import read_yaml, write_private

    raw = (read_yaml(source) or {}) if source is not None else {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: not a mapping")
    app = raw.get("app") if isinstance(raw.get("app"), dict) else {
        "name": "user-service", "image": "registry.example.com/apps/user-service"}
    base = source.resolve().parent if source is not None else Path.cwd()
    for key in ("manifests", "chart"):
        value = app.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).expanduser().is_absolute():
            app[key] = str((base / value).resolve())
    if isinstance(app.get("history"), dict):
        app["history"].pop("path", None)
    doc = {"app": app, "clusters": [{"id": f"c{n}", "groups": ["lab"]} for n in range(count)]}
    for key in ("defaults", "sim"):
        if key in raw:
            doc[key] = raw[key]
    directory.mkdir(parents=True, exist_ok=True)
    target = directory.resolve() / "lab-source.yaml"
    write_private(target, "# `release-console lab up N`: the fleet file's app on clusters c0..cN-1.\n"
                  + yaml.safe_dump(doc, sort_keys=False))
    return target
