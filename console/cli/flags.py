"""Sub-command parsers and the flags several commands share, written once.

`command` adds a sub-command that takes the common flags (`--config` before or after the
command name) and runs `run(args)`; `add_json`, `add_build` and `add_timeout` are the
flags that mean the same wherever they appear.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def command(subparsers: Any, common: argparse.ArgumentParser, name: str,
            run: Callable[[argparse.Namespace], int], help: str,
            description: str | None = None) -> argparse.ArgumentParser:
    """Add sub-command `name` (with the `common` flags) that runs `run(args)`."""
    parser = subparsers.add_parser(name, parents=[common], help=help, description=description)
    parser.set_defaults(func=run)
    return parser


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """`--json`: print `what` (e.g. "one JSON document") instead of text."""
    parser.add_argument("--json", action="store_true", help=what)


def add_build(parser: argparse.ArgumentParser) -> None:
    """`--build`: build the image first when the registry lacks it."""
    parser.add_argument("--build", action="store_true",
                        help="if the image is missing, run app.build.command first")


def add_timeout(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    """`--timeout S`: how long to wait for `what`."""
    parser.add_argument("--timeout", type=float, default=default, metavar="S",
                        help=f"{what} (default {default:g})")
