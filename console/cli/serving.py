"""What `sim` and `lab up` share: the options of a locally served fleet (where its files
go, the pods' readiness timing) and the stop-on-signal wait of a foreground server."""

from __future__ import annotations

import argparse
import os
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
    """An event SIGINT and SIGTERM set: the server's loop waits on it, then cleans up.

    The handler takes no lock: it writes a byte to a pipe, and a thread of its own sets
    the event. Python runs a handler in the main thread between two bytecodes, and that
    can be inside the main thread's own `stop.wait()` while it holds the event's lock
    (entering or leaving the wait): `stop.set()` there waited for that lock forever, and
    `lab up` or `sim` never stopped - a SIGTERM right after `ready` to a process short of
    CPU hung it 12 times in 300.
    """
    stop = threading.Event()
    readable, writable = os.pipe()
    os.set_blocking(writable, False)

    def set_on_wake() -> None:
        os.read(readable, 1)
        stop.set()

    def on_signal(signum: int, frame: object) -> None:
        try:
            os.write(writable, b"\0")
        except BlockingIOError:
            pass   # bytes already wait in the pipe: the event is being set

    threading.Thread(target=set_on_wake, name="stop-on-signal", daemon=True).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return stop
