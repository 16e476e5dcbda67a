"""`deploy`'s event printer (`console.cli.event_printer.EventPrinter`) with a reader that
stops reading: a release through the real client against the simulator still gets
every cluster's verdict while its stdout pipe is full - nothing that decides rollouts
waits on the output - and every line is printed once the reader reads again."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import threading
import time

import pytest

from console.cli.event_printer import EventPrinter, after_printing
from console.engine import ReleaseControl, ReleaseRequest
from console.engine.api import Outcome
from console.events import Event, Kind
from tests.pipes import filled_pipe


def test_a_blocked_stdout_does_not_stop_the_verdicts(world, capsys):
    # Before, the printer wrote on the thread that made the event - the one rollout
    # thread for progress - so the first line into the full pipe stopped every verdict
    # (and the release never ended until the reader read).
    w = world(["a", "b", "c", "d"], readiness_delay=0.3, jitter=0.0)
    w.deploy_everywhere("v1")
    read_end, write_end = filled_pipe()
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


class HeldStream(io.StringIO):
    """A stream whose writes wait until `let_through` is set (a slow reader)."""

    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order
        self.let_through = threading.Event()

    def write(self, text: str) -> int:
        self.let_through.wait(30)
        if text.strip():
            self.order.append("printed")
        return super().write(text)

    def isatty(self) -> bool:
        return False


def test_the_terminal_is_asked_only_after_the_gates_line_is_printed():
    # The question goes to the terminal itself; the gate's line is on the printer thread,
    # so without waiting for it the question came before the line it answers.
    order: list[str] = []
    stream = HeldStream(order)
    printer = EventPrinter(as_json=True, stream=stream)

    def approver(request: object) -> bool:
        order.append("asked")
        stream.let_through.set()   # on code that does not wait, the line comes after
        return True

    printer(Event(Kind.GATE_WAITING, "r-1", message="wave 1 done"))
    # Nothing is asked while the line waits: let it through after a bound at the latest.
    at_the_latest = threading.Timer(2.0, stream.let_through.set)
    at_the_latest.start()
    assert after_printing(printer, approver)(object()) is True
    at_the_latest.cancel()
    printer.close()
    assert order == ["printed", "asked"]


class Unwritable(io.StringIO):
    """A stream every write of which fails, as a full disk's (ENOSPC) does."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_an_output_that_cannot_be_written_ends_the_printing_not_the_waits(capsys):
    printer = EventPrinter(as_json=True, stream=Unwritable())
    for n in range(5):
        printer(Event(Kind.CLUSTER_HEALTHY, "r-1", cluster=f"c{n}"))
    flushing = threading.Thread(target=printer.flush, daemon=True)
    flushing.start()
    flushing.join(30)
    assert not flushing.is_alive(), "flush waits for ever: the printer thread died"
    printer(Event(Kind.RELEASE_FINISHED, "r-1"))
    printer.close()
    err = capsys.readouterr().err
    assert "6 event line(s) not printed: OSError: [Errno 28] No space left on device" in err


def test_a_line_after_close_comes_after_every_earlier_line():
    # A straggler (a thread still ending) gives a line while `close` waits for the
    # printer thread: it used to be written at once, before lines still being printed,
    # and between a line and its newline (`print` writes them apart).
    order: list[str] = []

    class HoldFirst(io.StringIO):
        let_through = threading.Event()

        def write(self, text: str) -> int:
            if "c0" in text:
                self.let_through.wait(30)
            if text.strip():
                order.extend(json.loads(line)["cluster"] for line in text.splitlines())
            return super().write(text)

    stream = HoldFirst()
    printer = EventPrinter(as_json=True, stream=stream)
    for n in range(3):
        printer(Event(Kind.CLUSTER_HEALTHY, "r-1", cluster=f"c{n}"))
    closing = threading.Thread(target=printer.close, daemon=True)
    closing.start()
    wait_until(lambda: printer._closed, "close began")
    late = threading.Thread(target=printer, daemon=True,
                            args=(Event(Kind.CLUSTER_FAILED, "r-1", cluster="late"),))
    late.start()
    # The late line is either written already (the old way) or handed to the printer
    # thread, after the lines it still prints.
    wait_until(lambda: "late" in order or not late.is_alive(), "the late line handled")
    stream.let_through.set()
    for thread in (closing, late):
        thread.join(30)
        assert not thread.is_alive()
    assert order == ["c0", "c1", "c2", "late"]


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_line_not_printed_after_close_is_told(capsys):
    # Before, `close` said its counts and a straggler's line lost after it (the output
    # already failed) was only counted, never told.
    printer = EventPrinter(as_json=True, stream=Unwritable())
    printer(Event(Kind.CLUSTER_HEALTHY, "r-1", cluster="c0"))
    printer.close()
    assert "1 event line(s) not printed: OSError" in capsys.readouterr().err
    printer(Event(Kind.CLUSTER_FAILED, "r-1", cluster="late"))
    err = capsys.readouterr().err
    assert "1 event line(s) not printed after the end of the output: OSError: [Errno 28]" \
        in err, err
    assert printer.lost == 0


def test_close_gives_up_an_output_that_takes_nothing_and_the_later_lines(capsys):
    # A stream that never takes its write (a reader that never reads): `close` waits
    # `stall` seconds, not for ever, and tells every line given up - a straggler's too.
    stream = HeldStream([])
    printer = EventPrinter(as_json=True, stream=stream, stall=0.5)
    for n in range(3):
        printer(Event(Kind.CLUSTER_HEALTHY, "r-1", cluster=f"c{n}"))
    closing = threading.Thread(target=printer.close, daemon=True)
    closing.start()
    closing.join(30)
    try:
        assert not closing.is_alive(), "close waits for ever for an output never read"
        assert "3 event line(s) not printed: the output took nothing for 0.5s" in \
            capsys.readouterr().err
        printer(Event(Kind.RELEASE_FINISHED, "r-1"))
        assert "1 event line(s) not printed after the end of the output" in \
            capsys.readouterr().err
    finally:
        stream.let_through.set()


def test_the_gate_question_waits_for_the_output_only_while_it_takes_lines():
    # stdout never read while a terminal is asked at a gate: before, `flush` waited for
    # ever for the gate's line, and the question was never asked.
    order: list[str] = []
    stream = HeldStream(order)
    printer = EventPrinter(as_json=True, stream=stream, stall=0.5)
    printer(Event(Kind.GATE_WAITING, "r-1", message="wave 1 done"))
    asking = threading.Thread(target=after_printing(printer, lambda _: order.append("asked")),
                              args=(object(),), daemon=True)
    asking.start()
    asking.join(20)
    try:
        assert not asking.is_alive(), "the question waits for ever for an unread output"
        assert order == ["asked"]
    finally:
        stream.let_through.set()
        printer.close()
    assert order == ["asked", "printed"]     # the line itself is not given up


def test_every_line_reaches_a_file_and_a_pipe_whole_and_in_order(tmp_path):
    # The printer writes to the descriptor itself: a file at once, a pipe a page at a
    # time and only whole lines per write (lines here span pages).
    lines = [Event(Kind.CLUSTER_HEALTHY, "r-1", cluster=f"c{n}", message="x" * (n * 37 % 900))
             for n in range(400)]
    with open(tmp_path / "events.jsonl", "w") as file:
        printer = EventPrinter(as_json=True, stream=file)
        for event in lines:
            printer(event)
        printer.close()
    read_end, write_end = os.pipe()
    got: list[bytes] = []
    drainer = threading.Thread(target=lambda: got.append(os.fdopen(read_end, "rb").read()),
                               daemon=True)
    drainer.start()
    with os.fdopen(write_end, "w") as pipe:
        printer = EventPrinter(as_json=True, stream=pipe)
        for event in lines:
            printer(event)
        printer.close()
    drainer.join(30)
    for text in ((tmp_path / "events.jsonl").read_text(), got[0].decode()):
        assert [json.loads(line)["cluster"] for line in text.splitlines()] == \
            [f"c{n}" for n in range(400)]


def test_stderr_through_the_pump_never_waits_on_a_pipe_nobody_reads():
    # A process whose stderr is a real pipe that is full and never read writes 3 MB to
    # stderr through the pump: nothing waits (1 MiB held, the rest dropped and counted);
    # at `stop` the held bytes are given up within the bound, and stderr is /dev/null
    # from then on (a later write does not wait either).
    import subprocess
    import sys
    import textwrap

    from tests.pipes import filled_pipe

    read_end, write_end = filled_pipe()
    script = textwrap.dedent("""
        import sys, time
        from console.cli.stderr_pump import BUFFER, StderrPump
        pump = StderrPump(2)
        for _ in range(30000):
            sys.stderr.write("x" * 99 + "\\n")
        sys.stderr.flush()
        print("written", flush=True)
        started = time.monotonic()
        pump.stop(0.5)
        print("stopped", time.monotonic() - started < 5, pump.given_up,
              pump.dropped >= 3_000_000 - BUFFER, flush=True)
        sys.stderr.write("after the end\\n")
        sys.stderr.flush()
        print("ended", flush=True)
    """)
    try:
        proc = subprocess.run([sys.executable, "-c", script], stderr=write_end,
                              stdout=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
        os.close(read_end)
    assert proc.stdout.split("\n")[:3] == ["written", "stopped True True True", "ended"], \
        proc.stdout


# The printer's write after `poll` said there was room, answered EAGAIN: what happens
# when the descriptor was inherited non-blocking and another writer of the same pipe
# took the room between the poll and the write. No real pipe does that on its own (one
# that says writable has a whole free page, and a write of at most PIPE_BUF takes it),
# and two writers racing do it only by chance: so strace injects EAGAIN into the real
# process's real writes, at the writes chosen (the printer's are the script's only ones).
EAGAIN_SCRIPT = """
import os
from console.cli.event_printer import EventPrinter
from console.events import Event, Kind
os.set_blocking(1, False)          # inherited non-blocking
printer = EventPrinter(as_json=True, stall=float(os.environ["STALL"]))
for n in range(400):
    printer(Event(Kind.CLUSTER_HEALTHY, "r-1", cluster=f"c{n}", message="x" * (n * 37 % 900)))
printer.close()
# (pwrite: not one of the `write`s answered EAGAIN)
report = os.open(os.environ["REPORT"], os.O_WRONLY | os.O_CREAT, 0o600)
os.pwrite(report, f"closed {printer.printed} {printer.queued}".encode(), 0)
"""


def run_with_eagain(tmp_path, when: str, stall: float) -> tuple[subprocess.CompletedProcess,
                                                                    str, str]:
    """EAGAIN_SCRIPT under strace, its `write`s number `when` answered EAGAIN; (the
    process, its strace log, what it reported after close)."""
    import shutil
    import sys

    strace = shutil.which("strace")
    if strace is None or subprocess.run([strace, "-qq", "-o", os.devnull, "true"],
                                        capture_output=True).returncode != 0:
        pytest.skip("needs strace, and ptrace allowed")
    log, report = tmp_path / "strace.log", tmp_path / "report.txt"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", STALL=str(stall),
               REPORT=str(report))
    proc = subprocess.run([strace, "-f", "-qq", "-o", str(log), "-e", "trace=write",
                           "-e", f"inject=write:error=EAGAIN:when={when}",
                           sys.executable, "-c", EAGAIN_SCRIPT],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=120)
    return proc, log.read_text(), report.read_text() if report.exists() else ""


def test_a_write_answered_eagain_after_the_poll_is_tried_again_and_every_line_arrives(
        tmp_path):
    proc, log, report = run_with_eagain(tmp_path, "2+3", stall=30.0)
    injected = [line for line in log.splitlines() if line.split(" ", 1)[-1].startswith(
        "write(1,") and "EAGAIN" in line and "(INJECTED)" in line]
    assert len(injected) >= 3, log[-3000:]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [json.loads(line)["cluster"] for line in proc.stdout.decode().splitlines()] == \
        [f"c{n}" for n in range(400)]
    assert report.split() == ["closed", "400", "400"], report   # printed, of queued


def test_a_descriptor_that_never_takes_a_write_after_the_poll_is_given_up_after_the_stall(
        tmp_path):
    # Every write answered EAGAIN (stderr's too: the note is lost, not waited on): once
    # closed, the printer waits `stall` seconds without a byte taken, then gives up.
    started = time.monotonic()
    proc, log, report = run_with_eagain(tmp_path, "1+", stall=1.0)
    assert time.monotonic() - started < 30
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == b""
    assert "(INJECTED)" in log
    assert report.split() == ["closed", "0", "400"], report   # none printed
