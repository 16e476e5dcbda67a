"""What `sim` and `lab up` share: the options of a locally served fleet (where its files
go, the pods' readiness timing) and the stop-on-signal wait of a foreground server."""

from __future__ import annotations

import argparse
import signal
import threading


def add_serving_arguments(parser: argparse.ArgumentParser, written: str) -> None:
    """`--kubeconfig-dir` (`written`: what lands there), `--readiness-delay`, `--jitter`."""
    parser.add_argument("--kubeconfig-dir", required=True, metavar="DIR",
                        help=f"where to write {written}")
    parser.add_argument("--readiness-delay", type=float, metavar="S",
                        help="seconds from pod creation to Ready (overrides the fleet file)")
    parser.add_argument("--jitter", type=float, metavar="S",
                        help="random extra readiness delay per pod, up to S seconds")


def readiness_overrides(args: argparse.Namespace) -> dict[str, float]:
    """The readiness options given on the command line, as fleet `sim:` settings."""
    return {k: v for k, v in (("readiness_delay", args.readiness_delay),
                              ("jitter", args.jitter)) if v is not None}


def stop_on_signals() -> threading.Event:
    """An event SIGINT and SIGTERM set: the server's loop waits on it, then cleans up."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
