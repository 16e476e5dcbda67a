"""What a screen asks of the console, as Textual messages (the frogmouth way).

Screens and widgets never call `ReleaseConsoleApp` methods to act: they post one of
these, it bubbles up to the app, and the app - which owns the engine process, the
running release and the screen stack - acts. So no screen imports the app, and the app
is the one place that decides what an action does (e.g. refusing a rollback while a
release runs). Reads a screen needs (the ledger, a cluster's detail) go through
`ConsoleServices`, the few app attributes screens may use. A message that carries values is a dataclass
(Textual's `Message` is made for that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from textual.message import Message

if TYPE_CHECKING:
    from textual.signal import Signal

    from console.engine.api import ReleaseRequest
    from console.engine.remote import EngineProcess
    from console.events import Event


class ConsoleServices(Protocol):
    """What screens may read from the app (worker threads for the blocking calls)."""

    operator: str
    events_signal: Signal[list[Event]]

    def engine(self) -> EngineProcess:
        """The engine process (blocking until it has started)."""

    def ledger(self) -> EngineProcess:
        """The ledger's reads, served by the engine process."""


@dataclass
class Notice(Message):
    """A warning (or, `severity="information"`, news) from a worker or engine thread,
    shown as a notification."""

    text: str
    severity: str = "warning"


class NewReleaseRequested(Message):
    """Open the release form (targets: the marked clusters)."""


@dataclass
class StartReleaseRequested(Message):
    """Start this release (the form asks; the app answers with `release_started`)."""

    request: ReleaseRequest


class PauseToggled(Message):
    """Pause the running release, or resume it."""


@dataclass
class ClusterSteerRequested(Message):
    """Skip (`o`) the selected cluster before it starts, or retry (`t`) it after it failed."""

    action: str
    cluster_id: str


@dataclass
class FollowSteerRequested(Message):
    """Steer a release another process runs (the follow screen): `action` (pause, resume,
    approve, reject, abort, skip, retry) through its control channel; `rollback` with
    abort."""

    release_id: str
    action: str
    cluster_id: str | None = None
    rollback: bool = False


class StatusRefreshRequested(Message):
    """Read every cluster's live version again."""


@dataclass
class DetailRequested(Message):
    """Open one cluster's detail screen."""

    cluster_id: str


@dataclass
class ClusterRollbackRequested(Message):
    """Roll one cluster back (the app confirms first)."""

    cluster_id: str


@dataclass
class ReleaseRollbackRequested(Message):
    """Roll back every cluster a release reached (the app confirms first)."""

    release_id: str
    version: str
    targets: Sequence[str]
