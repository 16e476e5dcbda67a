"""The engine in a process of its own, and the console's handle on it.

A release of a hundred clusters at once keeps a hundred engine threads busy in Python
(watches, JSON, the ledger); in the console's own process they would take the
interpreter lock from the UI thread, and keys would wait. So the console runs the engine
(wired by a `console.session.Session`: ledger, notifications) in a child process,
`python -m console.engine.host`, and talks to it over two pipes with pickled messages:

    parent -> child   ("call", id, method, args, kwargs)   run / status / detail / rollback /
                                                          plan_rollback /
                                                          rollback_release / releases /
                                                          matrix /
                                                          follow / steer
                      ("control", release_key, what, kwargs)   pause / resume / abort
                      ("answer", gate_id, GateAnswer)
    child -> parent   ("ready", ledger_error | None, operator)   after the session opened
                                                 (and reconciled what a stopped console
                                                 left open)
                      ("events", [Event, ...])   batched, every 50 ms at most
                      ("gate", gate_id, GateRequest)
                      ("result" | "error", id, value)
                      ("warning", text)
                      ("notice", text)           news for the person, not a problem
                                                 (a gate's "1 of 2 approvals")
                      ("holding", release_key)   the paused release held a cluster back

`EngineProcess` (the parent's side) offers the `Engine` methods the console uses
(blocking, for worker threads) plus the ledger reads, and `RemoteControl` mirrors
`ReleaseControl`; `console.engine.host.EngineHost` is the child's side. The child's stderr goes to a log file
created 0600 with an unpredictable name in the console's private directory. This module
never imports Textual: the child must stay light.
"""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from console.engine.api import (ClusterDetail, ClusterResult, ClusterStatus, GateAnswer,
                                GateRequest, ReleaseControl, ReleaseRequest,
                                ReleaseResult)
from console.errors import UserError
from console.events import Event


EVENT_BATCH_INTERVAL = 0.05   # s: the child sends events at most this often
EVENT_BATCH_MAX = 500         # events per message at most
EVENT_BACKLOG_MAX = 100_000   # events the child holds for a parent that stopped reading
STOP_TIMEOUT = 10.0           # s the child gets to stop before it is killed
ENGINE_NICENESS = 5           # the engine process yields the CPU to the console's UI
LOG_TAIL = 2000               # characters of the child's log quoted when it stops

METHODS = ("run", "status", "detail", "rollback", "plan_rollback", "rollback_release",
           "releases", "matrix", "follow", "follow_wait", "steer")


class EngineProcessError(UserError):
    """The engine process stopped or could not start."""


class RemoteControl:
    """`ReleaseControl` for a release running in the engine process."""

    def __init__(self, send: Callable[[tuple], None], key: int) -> None:
        self._send = send
        self.key = key
        self.paused = False
        # Set once the engine has held a cluster back in this pause (as ReleaseControl's).
        self.holding = threading.Event()

    def pause(self, by: str = "") -> None:
        """No new cluster starts until `resume`."""
        self.paused = True
        self._send(("control", self.key, "pause", {"by": by}))

    def resume(self, by: str = "") -> None:
        """New clusters may start again."""
        self.paused = False
        self.holding.clear()
        self._send(("control", self.key, "resume", {"by": by}))

    def abort(self, rollback: bool = False, by: str = "") -> None:
        """Stop starting clusters; optionally roll back what the release reached."""
        self._send(("control", self.key, "abort", {"rollback": rollback, "by": by}))

    def skip(self, cluster: str, by: str = "") -> None:
        """Never start `cluster` in this release (recorded `skipped_by_operator`)."""
        self._send(("control", self.key, "skip", {"cluster": cluster, "by": by}))

    def retry(self, cluster: str, by: str = "") -> None:
        """Deploy the failed `cluster` again once the rest of its wave ended."""
        self._send(("control", self.key, "retry", {"cluster": cluster, "by": by}))


def private_log() -> tuple[int, Path]:
    """A new log file, 0600, with an unpredictable name in the console's private (0700)
    directory: another user can neither read it nor plant a link where it will be."""
    from console.kube.private_files import private_dir
    fd, name = tempfile.mkstemp(prefix="engine-", suffix=".log", dir=private_dir())
    return fd, Path(name)


class EngineProcess:
    """The console's engine, in a child process (see the module docstring)."""

    def __init__(self, config_path: str | Path, on_events: Callable[[list[Event]], None],
                 approver: Callable[[GateRequest], GateAnswer],
                 on_warning: Callable[[str], None],
                 engine_options: Mapping[str, Any] | None = None,
                 on_notice: Callable[[str], None] | None = None) -> None:
        """Start the child for the fleet file at `config_path`; `engine_options` are
        keyword arguments for `Engine` (grace, request_timeout, ...)."""
        self.on_events = on_events
        self.approver = approver
        self.on_warning = on_warning
        self.on_notice = on_notice or on_warning
        self.ledger_error: str | None = None
        self.operator = ""   # who acts, as the child's session found it (with "ready")
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._controls: dict[int, RemoteControl] = {}   # of the releases running
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ready: Future = Future()
        self._closed = False
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # The child's stderr would scribble over the console's screen: it goes to a file.
        log_fd, self.log_path = private_log()
        with os.fdopen(log_fd, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "console.engine.host", str(to_child_r),
                 str(from_child_w), str(Path(config_path).resolve()),
                 pickle.dumps(dict(engine_options or {})).hex()],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, close_fds=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._out = Connection(to_child_w, readable=False)
        self._in = Connection(from_child_r, writable=False)
        self._reader = threading.Thread(target=self._read, name="engine-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The engine process's id (to watch its CPU, or to find it in `ps`)."""
        return self._proc.pid

    # -- the Engine's methods (blocking; call them from worker threads) -------------------

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the child has built its engine; raises if it could not."""
        self._ready.result(timeout=timeout)

    def run(self, request: ReleaseRequest, control: RemoteControl) -> ReleaseResult:
        """`Engine.run` with the gate questions going to `approver`."""
        self._controls[control.key] = control
        try:
            return self._call("run", request, control=control.key)
        finally:
            self._controls.pop(control.key, None)

    def new_control(self) -> RemoteControl:
        """A control for the next `run`."""
        return RemoteControl(self._send, next(self._ids))

    def status(self) -> list[ClusterStatus]:
        """`Engine.status()`."""
        return self._call("status")

    def detail(self, cluster_id: str) -> ClusterDetail:
        """`Engine.detail(cluster_id)`."""
        return self._call("detail", cluster_id)

    def rollback(self, cluster_id: str, to_version: str | None = None, *,
                 by: str = "", expect_from: str | None = None,
                 digest: str | None = None) -> ClusterResult:
        """`Engine.rollback(...)`."""
        return self._call("rollback", cluster_id, to_version, by=by, expect_from=expect_from,
                          digest=digest)

    def plan_rollback(self, cluster_id: str, to: str | None = None) -> Any:
        """`Engine.plan_rollback(...)` with the ledger's releases of that cluster: where
        `r` would take it, and why (`UserError` when refused)."""
        return self._call("plan_rollback", cluster_id, to)

    def rollback_release(self, release_id: str, *, by: str = "") -> list[ClusterResult]:
        """`Engine.rollback_release(...)`."""
        return self._call("rollback_release", release_id, by=by)

    def releases(self) -> list[Any]:
        """The ledger's releases, oldest first."""
        return self._call("releases")

    def matrix(self, live: Mapping[str, str | None],
               helm: Mapping[str, int | None] | None = None) -> list[Any]:
        """The ledger's version matrix for these live versions (and, for a chart app, live
        Helm revisions)."""
        return self._call("matrix", dict(live), dict(helm or {}))

    def follow(self, release_id: str | None = None) -> Any:
        """A `console.engine.follow.FollowView` of `release_id` (None: the release running
        on the fleet now); `UserError` when none runs."""
        return self._call("follow", release_id)

    def follow_wait(self, clusters: list[str], timeout: float) -> bool:
        """Block until the followed release's Leases, Deployments on `clusters` or the
        ledger change (True) or `timeout` s pass (False): `console.engine.follow.
        ChangeWatch`, kept in the engine process while the follow screen is open."""
        return bool(self._call("follow_wait", clusters, timeout))

    def follow_done(self) -> None:
        """The follow screen closed: stop its watches."""
        self._call("follow_done")

    def steer(self, release_id: str, action: str, cluster: str | None = None,
              rollback: bool = False) -> Any:
        """Ask another process's release through its control channel
        (`console.engine.steering_client.send`); its `Ack`."""
        return self._call("steer", release_id, action, cluster, rollback=rollback)

    def close(self) -> None:
        """Stop the child (it aborts a running release without rolling back)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._out.close()
        except OSError:
            pass
        try:
            # The child may spend STOP_TIMEOUT joining an interrupted release, then close.
            self._proc.wait(timeout=2 * STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=STOP_TIMEOUT)
        # Keep the log only when the engine had something to say.
        try:
            if self.log_path.stat().st_size == 0:
                self.log_path.unlink()
        except OSError:
            pass

    # -- plumbing -----------------------------------------------------------------------

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            if self._closed:
                raise EngineProcessError("the engine process has stopped")
            self._out.send(message)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.wait_ready()
        call_id = next(self._ids)
        future: Future = Future()
        with self._lock:
            self._pending[call_id] = future
        try:
            self._send(("call", call_id, method, args, kwargs))
        except (OSError, EngineProcessError) as exc:
            with self._lock:
                self._pending.pop(call_id, None)
            raise EngineProcessError(f"the engine process has stopped ({exc})") from None
        return future.result()

    def _read(self) -> None:
        """Reader thread: route the child's messages until it goes away."""
        try:
            while True:
                message = self._in.recv()
                kind = message[0]
                if kind == "events":
                    self._note_pauses(message[1])
                    self.on_events(message[1])
                elif kind in ("result", "error"):
                    with self._lock:
                        future = self._pending.pop(message[1], None)
                    if future is not None:
                        if kind == "result":
                            future.set_result(message[2])
                        else:
                            future.set_exception(message[2])
                elif kind == "gate":
                    threading.Thread(target=self._answer_gate, args=message[1:],
                                     name="engine-gate", daemon=True).start()
                elif kind == "warning":
                    self.on_warning(message[1])
                elif kind == "notice":
                    self.on_notice(message[1])
                elif kind == "holding":
                    control = self._controls.get(message[1])
                    if control is not None:
                        control.holding.set()
                elif kind == "ready":
                    self.ledger_error, self.operator = message[1], message[2]
                    self._ready.set_result(None)
        except (EOFError, OSError):
            pass
        error = EngineProcessError(f"the engine process stopped{self._log_tail()}")
        if not self._ready.done():
            self._ready.set_exception(error)
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            future.set_exception(error)

    def _note_pauses(self, events: list[Event]) -> None:
        """A pause or resume through the control channel (`control ID pause`) is the
        release's state too: the console's `p` then resumes what someone else paused."""
        from console.events import Kind
        for event in events:
            if event.kind in (Kind.PAUSED, Kind.RESUMED):
                for control in list(self._controls.values()):
                    control.paused = event.kind is Kind.PAUSED

    def _log_tail(self) -> str:
        """The end of the child's log, scrubbed, for the error that says it stopped (the
        private directory goes away with the console)."""
        from console.redact import scrub
        try:
            text = self.log_path.read_text(errors="replace")[-LOG_TAIL:].strip()
        except OSError:
            return ""
        return f" (log {self.log_path}: {scrub(text, LOG_TAIL)})" if text else ""

    def _answer_gate(self, gate_id: int, request: GateRequest) -> None:
        answer = self.approver(request)
        try:
            self._send(("answer", gate_id, answer))
        except (OSError, EngineProcessError):
            pass  # the child is gone; its release went with it
