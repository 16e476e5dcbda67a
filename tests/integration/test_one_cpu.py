"""`deploy` keeps its threads on one CPU (`console.cli.one_cpu`: they take turns at
Python's lock, which costs less on one CPU), and `--all-cpus` lets them spread. Read from
the running process's own threads (`/proc/PID/task/*/status`) while its canary waits at
its gate, every engine thread started by then."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_steering import CANARY, Deploy

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs a process allowed more than one CPU")


def cpus_of_threads(pid: int) -> dict[str, str]:
    """Each thread's allowed CPUs (`Cpus_allowed_list`), by thread id."""
    allowed = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:       # the thread ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                allowed[task.name] = line.split(":", 1)[1].strip()
    return allowed


def as_list(cpus: set[int]) -> str:
    """`Cpus_allowed_list`'s way of writing `cpus` when they run without gaps."""
    low, high = min(cpus), max(cpus)
    assert cpus == set(range(low, high + 1)), cpus
    return str(low) if low == high else f"{low}-{high}"


@pytest.mark.parametrize("spread", [False, True], ids=["one-cpu", "all-cpus"])
def test_deploy_keeps_its_threads_on_one_cpu_unless_told(world, tmp_path, spread):
    w = world(["a", "b", "c"], strategies=CANARY, readiness_delay=0.3, jitter=0.0)
    extra = ["--all-cpus"] if spread else []
    with Deploy(w.config_path, tmp_path, "--tag", "v2", "--strategy", "canary",
                "--wait-for-approval", *extra) as deploy:
        deploy.at_gate()
        threads = cpus_of_threads(deploy.proc.pid)
        deploy.proc.kill()
    assert len(threads) > 5, threads          # the engine's threads, not just main
    mine = os.sched_getaffinity(0)
    if spread:
        assert set(threads.values()) == {as_list(mine)}, threads
    else:
        kept = set(threads.values())
        assert len(kept) == 1 and int(kept.pop()) in mine, threads
