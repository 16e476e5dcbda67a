"""The command palette's entries (`ctrl+p`): the console's actions and every cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.command import Hit, Hits, Provider

from console.ui.messages import (DetailRequested, NewReleaseRequested, PauseToggled,
                                 StatusRefreshRequested)


class ConsoleCommands(Provider):
    """Command palette entries: the console's actions and every cluster."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        app: Any = self.app   # the ReleaseConsoleApp (not imported: it imports this module)
        commands = [
            ("New release", lambda: app.post_message(NewReleaseRequested()),
             "targets, strategy, tag, plan"),
            ("History", app.action_history, "the ledger and the version matrix"),
            ("Help", app.action_help, "every key and what it does"),
            ("Pause or resume the release", lambda: app.post_message(PauseToggled()),
             "no new cluster starts while paused"),
            ("Refresh live versions", lambda: app.post_message(StatusRefreshRequested()),
             "read every cluster again"),
        ]
        for cid in app.state.ids:
            commands.append((f"Cluster {cid}", lambda c=cid: app.post_message(DetailRequested(c)),
                             "pods, events, revisions, last error"))
        return commands

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield Hit(1.0, name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
