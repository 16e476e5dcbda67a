"""`deploy`'s event printer (`console.cli.deploy_cmd.EventPrinter`) with a reader that
stops reading: a release through the real client against the simulator still gets
every cluster's verdict while its stdout pipe is full - nothing that decides rollouts
waits on the output - and every line is printed once the reader reads again."""

from __future__ import annotations

import fcntl
import json
import os
import threading

from console.cli.deploy_cmd import EventPrinter
from console.engine import ReleaseControl, ReleaseRequest
from console.engine.api import Outcome
from console.events import Kind


def full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: the next write to it blocks until it is read."""
    read_end, write_end = os.pipe()
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(write_end, b" " * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags)
    return read_end, write_end


def test_a_blocked_stdout_does_not_stop_the_verdicts(world, capsys):
    # Before, the printer wrote on the thread that made the event - the one rollout
    # thread for progress - so the first line into the full pipe stopped every verdict
    # (and the release never ended until the reader read).
    w = world(["a", "b", "c", "d"], readiness_delay=0.3, jitter=0.0)
    w.deploy_everywhere("v1")
    read_end, write_end = full_pipe()
    stream = os.fdopen(write_end, "w")
    printer = EventPrinter(as_json=True, stream=stream)
    printer.PENDING = 10           # past 10 lines waiting, progress lines are dropped
    engine = w.engine()
    engine.add_listener(printer)
    result: dict[str, object] = {}
    read: list[bytes] = []

    def release() -> None:
        result["result"] = engine.run(ReleaseRequest(tag="v2", strategy="parallel"),
                                      w.approve, ReleaseControl())

    def drain() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            read.append(pipe.read())

    releasing = threading.Thread(target=release, daemon=True)
    drainer = threading.Thread(target=drain, daemon=True)
    try:
        releasing.start()
        releasing.join(90)
        assert not releasing.is_alive(), "no verdict while stdout's pipe is full"
        ended = result["result"]
        assert ended.outcome is Outcome.OK, ended           # type: ignore[union-attr]
        healthy = {e.cluster for e in w.recorder.events if e.kind is Kind.CLUSTER_HEALTHY}
        assert healthy == {"a", "b", "c", "d"}
    finally:
        drainer.start()            # the reader reads again: the printer goes on
        printer.close()
        stream.close()
        drainer.join(30)
    # Every event was printed once the pipe was read (the pipe's filler first).
    lines = [json.loads(line) for line in read[0].decode().split("\n") if line.strip()]
    kinds = [line["kind"] for line in lines]
    assert kinds.count("cluster_healthy") == 4 and kinds[-1] == "release_finished", kinds
    # Every other kind printed, in order; the progress lines dropped are said on stderr.
    made = [e.kind.value for e in w.recorder.events if e.kind is not Kind.CLUSTER_PROGRESS]
    assert [k for k in kinds if k != "cluster_progress"] == made
    assert kinds.count("cluster_progress") < sum(e.kind is Kind.CLUSTER_PROGRESS
                                                 for e in w.recorder.events)
    assert "progress line(s) not printed while the output was not read" in \
        capsys.readouterr().err
