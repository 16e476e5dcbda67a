"""The engine in a child process (`console.engine.remote`), as the console runs it."""

from __future__ import annotations

import os
import stat
import threading

from console.kube.private_files import private_dir
from console.engine.remote import EngineProcess


def test_the_engine_process_answers_and_logs_privately(world) -> None:
    w = world(["a", "b"])
    warnings: list[str] = []
    events_seen = threading.Event()
    process = EngineProcess(w.config_path, on_events=lambda _batch: events_seen.set(),
                            approver=w.approve, on_warning=warnings.append)
    try:
        process.wait_ready()
        assert process.ledger_error is None
        statuses = process.status()
        assert [(s.cluster, s.reachable) for s in statuses] == [("a", True), ("b", True)]

        # The child's log: 0600, in the console's 0700 private directory, a name no one
        # can guess from the pid (it used to be /tmp/release-console-engine-<pid>.log).
        log = process.log_path
        assert log.parent == private_dir()
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
        assert str(os.getpid()) not in log.name
    finally:
        process.close()
    assert warnings == []
