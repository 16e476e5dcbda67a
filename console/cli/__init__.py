"""The `release-console` command line: each `*_cmd.py` module is one sub-command (their
table is `console.cli.commands`); the others (`flags`, `approvals`, `output`, `serving`,
`drill`, `commands`) are helpers the sub-commands share.

`console.cli.commands` lists the sub-commands with their help texts; each module adds its
own arguments (`add_arguments`) to a parser made with `parents=[common]` (so `--config`
works before or after the command name), and its `run(args)` returns the exit code.
Modules import heavy libraries inside their functions, so `--help` stays fast.

Exit codes are an API: 0 ok, 1 the release failed, 2 bad input or pre-flight failure
(nothing touched), 3 stopped at a gate, 4 `status` could not read every cluster.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from console.cli.commands import COMMANDS
from console.errors import UserError

DEFAULT_CONFIG = "clusters.yaml"


def config_path(args: argparse.Namespace) -> str:
    """The fleet file: `--config`, else `$RELEASE_CONSOLE_CONFIG`, else ./clusters.yaml."""
    return (getattr(args, "config", None) or os.environ.get("RELEASE_CONSOLE_CONFIG")
            or DEFAULT_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every sub-command of `COMMANDS` (a missing module raises:
    it is a broken install or a table entry without its command, never a quieter CLI)."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a top-level `--config` from being reset by the sub-parser default.
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="fleet file (default: $RELEASE_CONSOLE_CONFIG or ./clusters.yaml)")
    parser = argparse.ArgumentParser(
        prog="release-console", parents=[common],
        description="Ship one application version to a fleet of Kubernetes clusters.")
    parser.add_argument("--theme", default=None, help="colour theme for the console")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for spec in COMMANDS:
        module = importlib.import_module(f"console.cli.{spec.name}_cmd")
        command = sub.add_parser(spec.name, parents=[common], help=spec.help,
                                 description=spec.description)
        command.set_defaults(func=module.run)
        module.add_arguments(command, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run the command, map errors to exit codes."""
    from console.redact import log_to_stderr
    log_to_stderr()   # warnings as one scrubbed line, never a raw traceback
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        from console.cli import ui_cmd   # no command: the console itself
        func = ui_cmd.run
    from console.engine.one_cpu import affinity, give_back
    cpus = affinity()   # `deploy` and `check` keep to one CPU while they run
    try:
        code = int(func(args) or 0)
        sys.stdout.flush()   # here, not at exit: a reader gone shows as BrokenPipeError
        return code
    except BrokenPipeError:
        # Printed past `console.cli.output.out`: stdout's reader went away (`| head`).
        from console.cli.output import reader_gone
        reader_gone()
        return 141   # what a shell reports for a program ended by SIGPIPE
    except UserError as exc:
        print(f"release-console: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("release-console: interrupted", file=sys.stderr)
        return 130
    finally:
        give_back(cpus)
