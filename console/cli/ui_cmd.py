"""`release-console [ui] [--config F] [--theme T]`: the Textual console (the default).

Textual is imported inside the functions, so other commands never load it.
"""

from __future__ import annotations

import argparse
import os
import sys

from console.cli import config_path
from console.errors import UserError

THEME_ENV = "RELEASE_CONSOLE_THEME"


def add_theme_argument(parser: argparse.ArgumentParser) -> None:
    """`--theme NAME` (SUPPRESS keeps the top-level `--theme` when given before the command)."""
    parser.add_argument("--theme", default=argparse.SUPPRESS,
                        help=f"colour theme (default: ${THEME_ENV} or release-dark; "
                             "themes/*.yaml and ~/.config/release-console/themes)")


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`ui`'s own arguments (its help texts are in `console.cli.commands`)."""
    add_theme_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the console on the fleet file (the console reads it after its first frame)."""
    return run_console(config_path(args), getattr(args, "theme", None))


def run_console(config: object, theme: str | None) -> int:
    """Run `ReleaseConsoleApp` in this terminal until the person quits; returns 0.
    `config`: a loaded `FleetConfig`, or the fleet file's path (read by the console after
    its first frame; a file it cannot use ends it with `UserError`, exit 2)."""
    from pathlib import Path

    from console.ui.app import ReleaseConsoleApp
    from console.ui.themes import load_themes, theme_dirs

    path = Path(config) if isinstance(config, (str, os.PathLike)) else Path(config.path)
    chosen = theme or os.environ.get(THEME_ENV)
    if chosen:
        from textual.theme import BUILTIN_THEMES

        names = {t.name for t in load_themes(theme_dirs(path.parent)).themes}
        names |= set(BUILTIN_THEMES)
        if chosen not in names:
            source = "--theme" if theme else f"${THEME_ENV}"
            raise UserError(f"{source}: no theme named {chosen!r}; themes: "
                            + ", ".join(sorted(names)))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        if not hasattr(config, "clusters"):
            # Nothing to draw on: a fleet file that cannot be used is still the error told.
            from console.config import load

            load(path)
        raise UserError("the console needs a terminal; in CI use `release-console deploy` "
                        "(see `release-console deploy --help`)")
    app = ReleaseConsoleApp(config, theme=chosen)
    app.run()
    if app.fleet_error is not None:
        raise UserError(app.fleet_error)
    return int(app.return_code or 0)
