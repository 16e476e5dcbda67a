"""The console's engine process as the app holds it: started in a thread worker once the
fleet is shown, `engine()` and `ledger()` for the workers that need it (each waits until
the engine is ready, or learns why there is none), stopped with the app.

The engine's start and the app's end race: the start worker is a thread, which Textual
may cancel with the app before it ever runs, or which runs on past the app's end and
makes the engine's process after `on_unmount` looked for one to close. So the app's end
(`_stop_engine`) answers every worker still waiting in `engine()` whatever the start
has reached, and an engine made after that end is closed by the worker that made it
(`_keep_engine`). Before, the start counted as begun once asked for, and a console quit
in that moment waited for ever (or up to 120 s, leaving the engine's process behind) -
tests/ui/test_first_frame.py has both stories.

`EngineLink` is a base class of `ReleaseConsoleApp` (after `App` in its bases): it uses
the app's fleet file path, event bridge, gate waiter, engine options, `_read_status`
and `shutdown_release`, and Textual's `post_message`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work

from console.errors import UserError
from console.ui.messages import Notice

if TYPE_CHECKING:
    from console.engine.remote import EngineProcess
    from console.ui.bridge import EventBridge, GateWaiter


class EngineLink:
    """The engine process's start, readiness and end (see the module doc)."""

    config_path: Path
    bridge: EventBridge
    gates: GateWaiter
    engine_options: Mapping[str, Any]
    post_message: Callable[..., Any]
    _read_status: Callable[[], None]
    shutdown_release: Callable[[], None]

    def _init_engine_link(self) -> None:
        """No engine yet (called by the app's `__init__`)."""
        self._engine: EngineProcess | None = None
        self._ledger_error: str | None = None
        # Set once `engine()` has its answer: the engine ready, or why there is none.
        self._engine_ready = threading.Event()
        self._engine_error: BaseException | None = None
        # Guards `_engine` against `_stopped`: an engine made after the app ended is
        # closed by the worker that made it (see `_keep_engine`).
        self._engine_lock = threading.Lock()
        self._stopped = False

    @work(thread=True, exit_on_error=False, group="engine")
    def _start_engine(self) -> None:
        """Start the engine process (it opens the ledger), then read the live versions."""
        from console.engine.remote import EngineProcess

        try:
            engine = EngineProcess(str(self.config_path), on_events=self.bridge.extend,
                                   approver=self.gates, on_warning=self._ledger_warning,
                                   engine_options=self.engine_options,
                                   on_notice=lambda text: self.post_message(
                                       Notice(text, severity="information")))
            if not self._keep_engine(engine):
                engine.close()   # the app ended meanwhile: nobody else would close it
                return
            engine.wait_ready()
        except Exception as exc:  # shown to the person; every later call reports it too
            self._engine, self._engine_error = None, exc
            self.post_message(Notice(f"engine unavailable: {exc}"))
            return
        finally:
            self._engine_ready.set()
        if engine.ledger_error is not None:
            # Releases are refused without a ledger (they would go unrecorded); the
            # fleet can still be watched.
            self._ledger_error = engine.ledger_error
            self.post_message(Notice(f"history unavailable, releases disabled: "
                                     f"{engine.ledger_error}"))
        # The engine's session reconciled what a stopped console left open before it
        # said "ready" (each told as a warning): the ledger read next is up to date.
        self._read_status()

    def _keep_engine(self, engine: EngineProcess) -> bool:
        """The engine becomes the app's (True), unless the app has ended: the start
        worker is a thread, which runs on past the app's end and may have made the
        engine's process after `_stop_engine` looked for one to close."""
        with self._engine_lock:
            if self._stopped:
                return False
            self._engine = engine
            return True

    def _ledger_warning(self, message: str) -> None:
        """A push failed (the record stays committed locally): tell, never block."""
        self.post_message(Notice(message))

    def engine(self) -> EngineProcess:
        """The engine process (worker threads only: waits until it has started)."""
        self._engine_ready.wait()
        if self._engine is None:
            raise UserError(f"engine unavailable: {self._engine_error}")
        return self._engine

    def ledger(self) -> EngineProcess:
        """The ledger's reads (`releases`, `matrix`), served by the engine process."""
        engine = self.engine()
        if self._ledger_error is not None:
            raise UserError(f"history unavailable: {self._ledger_error}")
        return engine

    def no_engine(self, why: str) -> None:
        """No engine will be ready (the fleet file could not be used, or the console
        stopped before its engine was): whoever waits in `engine()` - a refresh, the
        follow screen, the status timer - gets the reason instead of waiting for ever,
        which also kept the process from exiting (its executor waits for its threads)."""
        if not self._engine_ready.is_set():
            self._engine_error = UserError(why)
            self._engine_ready.set()

    def _stop_engine(self) -> None:
        """The app ends (`on_unmount`): whatever the engine's start has reached - its
        worker, cancelled with the app, may never run (nothing else would answer the
        waiters), or may make the engine's process only now (`_keep_engine` has it
        closed) - stop the running release, then the engine."""
        with self._engine_lock:
            self._stopped = True
            engine = self._engine
        self.no_engine("the console stopped before its engine was ready")
        self.shutdown_release()
        if engine is not None:
            engine.close()
