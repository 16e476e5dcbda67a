"""`deploy --json` into a stdout pipe nobody reads, on the simulator and on real
Kubernetes (the `stage` fixture; the lab cases are marked `real`): the release reaches
every verdict on the real kube-apiserver and controllers while its stdout is full, and
the process exits - with every line once the reader comes back within the bound, or
after the bound, saying on stderr how many lines it gave up, when the reader never
reads (console/cli/event_printer.py)."""

from __future__ import annotations

import json

from tests.lab.conftest import IDS, wait_for
from tests.pipes import deploy_unread, finished, left_in, read_to_end

RELEASE = ("--tag", "v1", "--strategy", "parallel", "--yes", "--fail-fast-grace", "0.5")


def test_a_stdout_never_read_neither_stops_the_release_nor_keeps_it_from_exiting(stage):
    stage.write()
    with deploy_unread(stage.config_path, *RELEASE, "--output-timeout", "2s") as (proc, out):
        err = finished(proc, "with its stdout never read")
        assert proc.returncode == 0, err
        assert [stage.version(cid) for cid in IDS] == ["v1"] * 3
        assert all(stage.ready_pods(cid, "v1") == 2 for cid in IDS)
        told = [line for line in err.splitlines() if "event line(s) not printed" in line]
        assert len(told) == 1 and "took nothing for 2s after the release ended" in told[0], err
        assert left_in(out).strip() == b""          # not a line, nor a piece of one


def test_a_reader_back_within_the_bound_gets_every_line(stage):
    # Nothing is read until every cluster runs v1 (the verdicts came with stdout full);
    # then the reader reads it all, well within the bound: nothing is given up.
    stage.write()
    with deploy_unread(stage.config_path, *RELEASE, "--output-timeout", "60s") as (proc, out):
        wait_for(lambda: proc.poll() is not None or
                 all(stage.version(cid) == "v1" and stage.ready_pods(cid, "v1") == 2
                     for cid in IDS), timeout=180, what="every cluster at v1")
        assert proc.poll() is None, "deploy exited with its stdout unread"
        read = read_to_end(out)                # to the end: the process closed stdout
        err = finished(proc, "once its stdout was read")
    assert proc.returncode == 0, err
    assert "not printed" not in err, err
    lines = [json.loads(line) for line in read.decode().split("\n") if line.strip()]
    kinds = [line["kind"] for line in lines]
    assert sorted(line["cluster"] for line in lines if line["kind"] == "cluster_healthy") \
        == list(IDS), kinds
    assert kinds[0] == "release_planned" and kinds[-1] == "release_finished", kinds
