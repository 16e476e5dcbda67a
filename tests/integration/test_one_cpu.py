"""`deploy` keeps its threads on one CPU (`console.cli.one_cpu`: they take turns at
Python's lock, which costs less on one CPU), and `--all-cpus` lets them spread. Read from
the running process's own threads (`/proc/PID/task/*/status`) while its canary waits at
its gate, every engine thread started by then. A command run in-process leaves its
caller's CPUs as they were; a release that runs programs (helm, credential plugins) is
never kept to one CPU."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from console.cli import main
from console.cli.one_cpu import runs_programs
from console.config import load
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
    runs, start = [], None
    for cpu in sorted(cpus):
        if start is None or cpu != end + 1:
            if start is not None:
                runs.append((start, end))
            start = cpu
        end = cpu
    runs.append((start, end))
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


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


def test_a_command_run_in_process_gives_its_caller_its_cpus_back(world, tmp_path,
                                                                  monkeypatch):
    """`main(["check", ...])` in this process (as many tests run commands) keeps the
    check to one CPU while it runs, and this thread gets every CPU back after. (Before:
    the test process's thread stayed on one CPU, with every test after it.)"""
    w = world(["a", "b"], readiness_delay=0.1, jitter=0.0)
    monkeypatch.setenv("RELEASE_CONSOLE_CONFIG", str(w.config_path))
    before = os.sched_getaffinity(0)
    assert main(["check", "--tag", "v1"]) == 0
    assert os.sched_getaffinity(0) == before


def test_a_release_that_runs_programs_is_not_kept_to_one_cpu(tmp_path):
    """helm (a chart) and credential plugins inherit the affinity: such a fleet spreads."""
    base = """\
        app:
          name: web
          image: registry.example.com/apps/web
        clusters:
          - id: a
            credentials: {kubeconfig: a.yaml%s}
        """
    plain, plugin = (tmp_path / "plain.yaml", tmp_path / "plugin.yaml")
    plain.write_text(textwrap.dedent(base % ""))
    plugin.write_text(textwrap.dedent(base % ", allow_exec: true"))
    assert not runs_programs(load(plain))
    assert runs_programs(load(plugin))
