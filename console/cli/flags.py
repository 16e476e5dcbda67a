"""The flags several sub-commands share, written once: `add_json`, `add_build`,
`add_timeout`, `add_fail_fast_grace` and `add_all_cpus` mean the same wherever they appear; `seconds` reads
a flag given in seconds.
"""

from __future__ import annotations

import argparse


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


def add_fail_fast_grace(parser: argparse.ArgumentParser, states: str, default: str) -> None:
    """`--fail-fast-grace S`: how long a new pod may stay in the waiting `states`
    (`default` says what applies without the flag)."""
    parser.add_argument("--fail-fast-grace", type=seconds, default=None, metavar="S",
                        help=f"seconds a new pod may stay in {states} before its cluster "
                             f"fails ({default})")


def add_all_cpus(parser: argparse.ArgumentParser) -> None:
    """`--all-cpus`: let the process's threads spread over every CPU (console.engine.one_cpu)."""
    parser.add_argument("--all-cpus", action="store_true",
                        help="let the engine's threads run on every CPU instead of the one "
                             "it starts on (they take turns at Python's lock: on one CPU "
                             "they spend less; a release with Helm or credential plugins always "
                             "spreads)")


def one_cpu_unless_asked(args: argparse.Namespace, config: object) -> None:
    """Keep the command's thread, and all it starts, to one CPU (`console.engine.one_cpu`)
    unless `--all-cpus` or the release runs programs (helm, credential plugins) that
    would inherit it."""
    from console.engine.one_cpu import one_cpu_unless_spread
    one_cpu_unless_spread(config, args.all_cpus)


def seconds(text: str) -> float:
    """A number of seconds from 0 to 3600 (`argparse` type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600, got {value:g}")
    return value
