"""`deploy --json` into a stdout pipe nobody reads, on the simulator and on real
Kubernetes (the `stage` fixture; the lab cases are marked `real`): the release reaches
every verdict on the real kube-apiserver and controllers while its stdout is full, and
the process exits - with every line once the reader comes back within the bound, or
after the bound, saying on stderr how many lines it gave up, when the reader never
reads (console/cli/event_printer.py)."""

from __future__ import annotations

import json
import os
import subprocess

from tests.lab.conftest import IDS, wait_for
from tests.pipes import deploy_into, filled_pipe, left_in

RELEASE = ("--tag", "v1", "--strategy", "parallel", "--yes", "--fail-fast-grace", "0.5")


def finished(proc: subprocess.Popen, what: str) -> str:
    """The process's stderr once it exited (killed, and the test failed, after 180 s)."""
    try:
        return proc.communicate(timeout=180)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        err = proc.communicate(timeout=30)[1]
        raise AssertionError(f"deploy did not exit {what}; stderr: {err[-2000:]}") from None


def test_a_stdout_never_read_neither_stops_the_release_nor_keeps_it_from_exiting(stage):
    stage.write()
    read_end, write_end = filled_pipe()
    proc = deploy_into(stage.config_path, write_end, *RELEASE, "--output-timeout", "2s")
    try:
        err = finished(proc, "with its stdout never read")
        assert proc.returncode == 0, err
        assert [stage.version(cid) for cid in IDS] == ["v1"] * 3
        assert all(stage.ready_pods(cid, "v1") == 2 for cid in IDS)
        told = [line for line in err.splitlines() if "event line(s) not printed" in line]
        assert len(told) == 1 and "took nothing for 2s after the release ended" in told[0], err
        assert left_in(read_end).strip() == b""          # not a line, nor a piece of one
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        os.close(read_end)


def test_a_reader_back_within_the_bound_gets_every_line(stage):
    # Nothing is read until every cluster runs v1 (the verdicts came with stdout full);
    # then the reader reads it all, well within the bound: nothing is given up.
    stage.write()
    read_end, write_end = filled_pipe()
    proc = deploy_into(stage.config_path, write_end, *RELEASE, "--output-timeout", "60s")
    try:
        wait_for(lambda: proc.poll() is not None or
                 all(stage.version(cid) == "v1" and stage.ready_pods(cid, "v1") == 2
                     for cid in IDS), timeout=180, what="every cluster at v1")
        assert proc.poll() is None, "deploy exited with its stdout unread"
        with os.fdopen(read_end, "rb") as pipe:
            read = pipe.read()                 # to the end: the process closed stdout
        err = finished(proc, "once its stdout was read")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0, err
    assert "not printed" not in err, err
    lines = [json.loads(line) for line in read.decode().split("\n") if line.strip()]
    kinds = [line["kind"] for line in lines]
    assert sorted(line["cluster"] for line in lines if line["kind"] == "cluster_healthy") \
        == list(IDS), kinds
    assert kinds[0] == "release_planned" and kinds[-1] == "release_finished", kinds
