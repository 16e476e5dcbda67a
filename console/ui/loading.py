"""Reading the fleet file after the console's first frame.

Given the fleet file's path (as `release-console ui` does), the app draws its first frame
with the header and the grid saying "loading the fleet", and `FleetLoading._load_fleet`
reads and validates the file on a daemon thread of its own: for 1,000 clusters that was
about as much CPU as the rest of the start, and on a loaded 2-core machine every CPU
millisecond before the first frame is wall time; and a read that hangs never keeps the
console from ending. The result comes back as a `FleetRead` message; the grid
fills in, then the engine starts (it reads the file again in its own process). A file the
console cannot use ends it with exit code 2 and the error, which `release-console ui`
prints.

`FleetLoading` is a base class of `ReleaseConsoleApp` (after `App` in its bases): it uses
the app's `config`, `config_path`, view model, fleet screen and `fleet_loaded` event.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

from console.errors import UserError
from console.ui.state import ClusterInfo, FleetState

if TYPE_CHECKING:
    from console.config import FleetConfig
    from console.ui.screens.fleet import FleetScreen


class FleetRead(Message):
    """The fleet file, read by the loader thread after the first frame."""

    def __init__(self, config: FleetConfig | None, error: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.error = error


class FleetLoading:
    """The fleet file's read after the first frame (see the module doc)."""

    config: FleetConfig | None
    config_path: Path
    fleet_error: str | None
    fleet_loaded: asyncio.Event
    state: FleetState
    fleet: FleetScreen
    post_message: Callable[..., Any]
    call_after_refresh: Callable[..., Any]
    exit: Callable[..., Any]
    _fleet_ready: Callable[[], None]
    no_engine: Callable[[str], None]

    def _load_fleet(self) -> None:
        """Read and validate the fleet file on a daemon thread of its own: keys and
        frames go on meanwhile, and a read that hangs (a named pipe nobody writes, a
        stuck network mount) never keeps the console from ending. (Not a Textual thread
        worker: those run in asyncio's default executor, whose threads the event loop's
        end and the interpreter's exit wait for - `q` during such a read never ended
        the process.)"""
        threading.Thread(target=self._read_fleet, daemon=True, name="fleet-read").start()

    def _read_fleet(self) -> None:
        from console.config import load

        # Told by a message, not `call_from_thread`: that waits for the event loop, which
        # never comes back to it when the person quit while the file was being read (a
        # message to an app that has ended is dropped).
        try:
            config = load(self.config_path)
        except UserError as exc:
            self._told(FleetRead(None, str(exc)))
            return
        except Exception as exc:  # a bug or an OSError: said, never an endless "loading"
            self._told(FleetRead(None, f"{self.config_path}: cannot read the fleet "
                                       f"file: {type(exc).__name__}: {exc}"))
            return
        self._told(FleetRead(config))

    def _told(self, message: FleetRead) -> None:
        try:
            self.post_message(message)
        except RuntimeError:
            pass   # the app's event loop closed while the file was read: nobody to tell

    def on_fleet_read(self, message: FleetRead) -> None:
        """The fleet file is read: fill the grid, then start the engine. (Named for
        the message: Textual finds `@on` handlers only on the app's own class.)"""
        config = message.config
        if config is None:
            self._fleet_failed(message.error or "the fleet file could not be read")
            return
        self.config = config
        self.state.set_clusters(cluster_infos(config))
        self.fleet.fleet_loaded(config.app.name)
        self.fleet_loaded.set()
        self.call_after_refresh(self._fleet_ready)

    def _fleet_failed(self, error: str) -> None:
        """The fleet file cannot be used: quit with 2 (`release-console ui` prints why)."""
        self.fleet_error = error
        self.no_engine(error)
        self.exit(return_code=2)


def cluster_infos(config: FleetConfig) -> list[ClusterInfo]:
    """The grid's rows for the fleet file's clusters, in its order."""
    return [ClusterInfo(c.id, tuple(c.groups), bool(c.production)) for c in config.clusters]
