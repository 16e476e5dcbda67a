"""The sub-command table (`console.cli.commands`) and the parser built from it: every
entry is a command, and an entry without its module fails loudly."""

from __future__ import annotations

import argparse

import pytest

import console.cli
from console.cli import build_parser
from console.cli.commands import COMMANDS, Command


def test_every_command_of_the_table_is_in_the_parser() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [spec.name for spec in COMMANDS]


def test_a_command_without_its_module_fails_loudly(monkeypatch) -> None:
    # It used to be left out of the parser in silence: `release-console nosuch` then said
    # "invalid choice", as for a typo, and `--help` did not list it.
    monkeypatch.setattr(console.cli, "COMMANDS",
                        (*COMMANDS, Command("nosuch", "a command whose module is missing")))
    with pytest.raises(ModuleNotFoundError, match="console.cli.nosuch_cmd"):
        build_parser()
