"""`deploy --json` whose stdout cannot be written (/dev/full answers every write with
ENOSPC), asked at its terminal for a gate, as a real process on the simulator: the
release goes on, the terminal's question is asked, and stderr says how many event lines
were not printed and why.

Before, the printer thread died at the first failed write; the gate question then waited
for ever for lines nobody would take, holding the release's leases.

And `deploy --json` into a real pipe whose reader never reads (nor closes it): once the
release has ended the process waits `--output-timeout` without a byte taken, says on
stderr how many lines it gave up, and exits with the release's code; a reader that is
merely slow (a page at a time, more slowly in all than that bound) gets every line.
With stderr on that same pipe (`2>&1`) the note waits for room no longer than the bound
either (then stderr moves to /dev/null): before, it sat in its print for ever."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.conftest import wait_for
from tests.pipes import deploy_unread, finished, left_in, stopped

V2 = ("--tag", "v2", "--strategy", "parallel")
ONE = {"canary": {"waves": [["a"], ["b"]], "gates": True}}


def test_the_gate_question_is_asked_when_stdout_cannot_be_written(world):
    w = world(["a", "b"], strategies=ONE, readiness_delay=0.2, jitter=0.0)
    leader, follower = pty.openpty()
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "console", "deploy", "--json",
                                 "--config", str(w.config_path), "--tag", "v2",
                                 "--strategy", "canary"],
                                stdin=follower, stdout=full, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ))
    os.close(follower)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_for(lambda: w.version("a") == "v2", timeout=90, what="wave 1 deployed")
        wait_for(lambda: any("wave 1 finished" in e for e in errors), timeout=60,
                 what=f"the terminal's gate question (stderr: {errors[-5:]})")
        os.write(leader, b"y\n")
        assert proc.wait(timeout=120) == 0, errors[-10:]
    finally:
        stopped(proc)
        os.close(leader)
        reader.join(timeout=30)
    assert w.version("b") == "v2", errors[-10:]
    told = [e for e in errors if "event line(s) not printed: OSError" in e]
    assert told and "No space left on device" in told[0], errors[-10:]
    assert not any("Traceback" in e for e in errors), errors


@pytest.mark.parametrize("as_json,stderr_too", [(True, False), (False, False), (True, True)],
                         ids=["json", "human", "json-2>&1"])
def test_a_stdout_never_read_does_not_keep_deploy_from_exiting(world, as_json, stderr_too):
    # Before, the printer thread sat in its write for ever and `close` joined it: the
    # release ended (every cluster at v2) but the process never exited. The human
    # lines' summary, printed after `close`, must not wait on the pipe either. With
    # stderr on the same pipe (`2>&1`), neither may the note of the lines given up:
    # before, it sat in its print to stderr for ever.
    w = world(["a", "b"], readiness_delay=0.2, jitter=0.0)
    with deploy_unread(w.config_path, *V2, "--output-timeout", "2s", as_json=as_json,
                       stderr_too=stderr_too) as (proc, out):
        err = finished(proc, lambda: f"with its stdout never read (a: {w.version('a')}, "
                       f"b: {w.version('b')})", timeout=150)
        if stderr_too:
            # The note could not go in (the pipe is never read): it is lost, not waited on.
            assert proc.returncode == 0 and err is None
        else:
            assert proc.returncode == 0, err
        assert w.version("a") == w.version("b") == "v2"
        if not stderr_too:
            told = [line for line in err.splitlines() if "event line(s) not printed" in line]
            assert len(told) == 1 and told[0].endswith(
                "the output took nothing for 2s after the release ended"), err
            assert int(told[0].split("warning: ")[1].split()[0]) >= 3, told  # every line
            assert "Traceback" not in err and "Fatal Python error" not in err, err
        # Nothing went into the pipe: no line, nor a piece of one, after the filler.
        left = left_in(out)
        assert left.strip() == b"", left[-300:]


def test_a_slow_reader_gets_every_line(world):
    # One page at a time, a page every PACE seconds: the output takes something well
    # within the bound each time, though in all the reader takes longer than the bound.
    bound, pace = 3.0, 1.0
    ids = ["a", "b", "c", "d", "e", "f"]       # ~25 KB of lines: ~8 pages or more
    w = world(ids, readiness_delay=0.2, jitter=0.0)
    with deploy_unread(w.config_path, *V2, "--output-timeout", f"{bound:g}s",
                       size=4096) as (proc, out):
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
        reader.start()
        read = b""
        try:
            wait_for(lambda: all(w.version(c) == "v2" for c in ids), timeout=120,
                     what=f"the release's end (stderr: {errors[-5:]})")
            started = time.monotonic()
            paced = threading.Event()
            while piece := os.read(out, 4096):
                read += piece
                paced.wait(pace)       # the slow reader itself: a page per PACE seconds
            took = time.monotonic() - started
            assert proc.wait(timeout=60) == 0, errors[-10:]
        finally:
            stopped(proc)
            reader.join(timeout=30)
    assert not any("not printed" in e for e in errors), errors
    kinds = [json.loads(line)["kind"] for line in read.decode().split("\n") if line.strip()]
    assert kinds.count("cluster_healthy") == 6 and kinds[-1] == "release_finished", kinds
    # The reader was slower in all than twice the bound (the release ends at most moments
    # after its clusters run v2): a bound on the whole wait would have lost lines.
    assert took > 2 * bound, (took, len(read))


def plant_stale_lease(w) -> None:
    """A's release lock held by another console that stopped renewing it an hour ago:
    the release's lock taking warns on stderr that it looks stale, watches it 2 s, then
    takes it over."""
    from datetime import datetime, timedelta, timezone

    from console.engine import Engine
    from console.locks import lease_name
    from console.locks.lease import LEASES

    engine = Engine(w.config)
    try:
        driver = engine.driver("a")
        driver.ensure_namespace()
        hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
        driver.client.request("POST", LEASES.format(namespace=driver.namespace), body={
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": lease_name(w.config.app.name),
                         "namespace": driver.namespace},
            "spec": {"holderIdentity": "ops@elsewhere:1/r-old", "leaseDurationSeconds": 2,
                     "renewTime": hour_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}, timeout=10)
    finally:
        engine.close()


def test_a_warning_on_stderr_during_the_release_does_not_hold_it_with_2_and_1(world):
    # `deploy --json 2>&1` into a pipe never read: while the release runs (taking a's
    # release lock, left stale by another console) the engine warns on stderr. Before,
    # that warning's write sat in the full pipe for ever - and with it the release:
    # nothing deployed anywhere, the process never ended.
    w = world(["a", "b"], readiness_delay=0.2, jitter=0.0)
    plant_stale_lease(w)
    with deploy_unread(w.config_path, *V2, "--output-timeout", "2s",
                       stderr_too=True) as (proc, out):
        finished(proc, lambda: f"with a warning on its never-read stderr (a: "
                 f"{w.version('a')}, b: {w.version('b')})", timeout=150)
        assert proc.returncode == 0
        assert w.version("a") == w.version("b") == "v2"
        # Nothing went into the pipe: not the warning, nor a piece of it.
        left = left_in(out)
        assert left.strip() == b"", left[-300:]


def test_a_warning_during_the_release_still_reaches_a_stderr_that_is_read(world):
    # The same warning with stderr a pipe of its own, read (stdout never read): the
    # pump passes it on, once, before the note of the lines given up.
    w = world(["a", "b"], readiness_delay=0.2, jitter=0.0)
    plant_stale_lease(w)
    with deploy_unread(w.config_path, *V2, "--output-timeout", "2s") as (proc, out):
        err = finished(proc, "with its stdout never read", timeout=150)
        assert proc.returncode == 0, err
    assert err.count("looks stale by its own clock") == 1, err
    assert err.index("looks stale") < err.index("event line(s) not printed"), err


# `deploy` run in a process whose engine's close fails (a seeded fault in our own engine,
# after its real close): says on stdout whether fd 2 was the real stderr again after.
CLOSE_FAILS = """
import os, sys
from console.engine import Engine
closing = Engine.close
def failing(self):
    closing(self)
    raise RuntimeError("the engine's close failed")
Engine.close = failing
from console.cli import main
before = os.fstat(2)
try:
    main(sys.argv[1:])
except RuntimeError as exc:
    print("raised:", exc, flush=True)
print("stderr back:", os.path.samestat(before, os.fstat(2)), flush=True)
"""


def test_an_engine_close_that_fails_still_gives_stderr_back(world):
    # stderr a pipe (read): the release's pump takes fd 2. Before, a failing engine close
    # skipped the printer's close: fd 2 stayed the pump's pipe, and the traceback that
    # followed went to the pump's daemon threads, lost at exit.
    w = world(["a"], readiness_delay=0.1, jitter=0.0)
    proc = subprocess.run([sys.executable, "-c", CLOSE_FAILS, "deploy", "--json",
                           "--config", str(w.config_path), *V2],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=150)
    assert "raised: the engine's close failed" in proc.stdout, (proc.stdout, proc.stderr)
    assert "stderr back: True" in proc.stdout, (proc.stdout[-2000:], proc.stderr)
    assert w.version("a") == "v2"


def test_a_fatal_signal_during_the_pump_is_told_on_the_real_stderr():
    # With faulthandler on, a crash while the pump holds fd 2: the dump is written by the
    # dying thread, which holds the interpreter, so the pump's threads cannot pass it on.
    # Before, it went into the pump's pipe and was lost with the process.
    code = ("import faulthandler, sys\n"
            "from console.cli.stderr_pump import StderrPump\n"
            "pump = StderrPump(2)\n"
            "faulthandler._sigsegv()\n")
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "Fatal Python error: Segmentation fault" in proc.stderr, proc.stderr
