"""The release form's build pane: the offer to build a missing image, then the build's
output as it streams, with its elapsed time, and how it ended.

The pane only shows; the form runs the build in a worker and feeds it (`started`, `line`,
`finished`) from the UI thread. Its `Build and release` button posts `Button.Pressed`
(id `build-run`) for the form to act on.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Button, RichLog, Static

from console.ui.state import Phase
from console.ui.widgets.palette import Palette


class BuildPane(Vertical):
    """Offer, progress and outcome of `app.build.command` for the release's tag."""

    DEFAULT_CSS = """
    BuildPane {
        display: none;
        height: auto;
    }
    BuildPane.shown {
        display: block;
    }
    BuildPane #build-status {
        margin-top: 1;
    }
    BuildPane #build-actions {
        height: auto;
    }
    BuildPane #build-log {
        height: 10;
        border: round $panel-lighten-1;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="build-pane")
        self._started: float | None = None
        self._command = ""
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="build-status")
        with Horizontal(id="build-actions"):
            yield Button("Build and release", id="build-run", variant="warning")
        yield RichLog(id="build-log", markup=False, wrap=True, max_lines=1000)

    @property
    def running(self) -> bool:
        """Whether a build is streaming now."""
        return self._started is not None

    def offer(self, reason: str, command: str) -> None:
        """Show the offer: why the image is missing and the command that makes it."""
        self.add_class("shown")
        self._command = command
        self.query_one("#build-actions").display = True
        self.query_one("#build-log").display = False
        self.query_one("#build-status", Static).update(Text.assemble(
            (f"{reason}. ", Palette.of(self.app).bad),
            "The fleet file's build command can make it: ", (command, "bold"),
            " - build it, then release?"))
        self.query_one("#build-run", Button).focus()

    def hide(self) -> None:
        """Hide the pane (a new start, or the release went ahead)."""
        self.remove_class("shown")

    def started(self, command: str) -> None:
        """The build began: clear the log, tick the elapsed time."""
        self.add_class("shown")
        self._command = command
        self._started = time.monotonic()
        self.query_one("#build-actions").display = False
        log = self.query_one("#build-log", RichLog)
        log.display = True
        log.clear()
        self._tick()
        self._timer = self.set_interval(0.5, self._tick)

    def line(self, text: str) -> None:
        """One line of the build's output."""
        self.query_one("#build-log", RichLog).write(Text(text))

    def finished(self, ok: bool, detail: str, tail: str = "") -> None:
        """The build (and the image re-check) ended; a failure shows its last lines."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        elapsed = self._elapsed()
        self._started = None
        pal = Palette.of(self.app)
        status = self.query_one("#build-status", Static)
        if ok:
            status.update(Text(f"✔ build done in {elapsed}: {detail}",
                               pal.phases[Phase.HEALTHY]))
            return
        status.update(Text(f"✘ build failed after {elapsed}: {detail}; nothing was released",
                           pal.bad))
        if tail:
            log = self.query_one("#build-log", RichLog)
            log.write(Text("── last lines ──", "bold"))
            for text in tail.splitlines():
                log.write(Text(text, pal.bad))

    def _elapsed(self) -> str:
        if self._started is None:
            return "0.0s"
        return f"{time.monotonic() - self._started:.1f}s"

    def _tick(self) -> None:
        self.query_one("#build-status", Static).update(Text.assemble(
            ("building ", "bold"), (self._command, "bold"), f" · {self._elapsed()}"))
