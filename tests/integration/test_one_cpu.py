"""`deploy` keeps its threads on one CPU (`console.engine.one_cpu`: they take turns at
Python's lock, which costs less on one CPU), and `--all-cpus` lets them spread. Read from
the running process's own threads (`/proc/PID/task/*/status`) while its canary waits at
its gate, every engine thread started by then. A command run in-process leaves its
caller's CPUs as they were; a release that runs programs (helm, credential plugins) is
never kept to one CPU. A busy program on the CPU kept moves every thread of the console,
and those it starts after, to a CPU with room (`CpuWatch`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from console.cli import main
from console.engine.one_cpu import cpu_times, runs_programs
from console.config import load
from tests.integration.test_steering import CANARY, Deploy, control
from tests.waiting import wait_for

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


def assert_kept_or_spread(threads: dict[str, str], spread: bool) -> None:
    """Every thread allowed this process's CPUs (`spread`), or all of them one of those."""
    mine = os.sched_getaffinity(0)
    if spread:
        assert set(threads.values()) == {as_list(mine)}, threads
    else:
        kept = set(threads.values())
        assert len(kept) == 1 and int(kept.pop()) in mine, threads


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
    assert_kept_or_spread(threads, spread)


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


def busy_on(cpu: int) -> subprocess.Popen:
    """A program using all of `cpu` (kept to it)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                           stdin=subprocess.DEVNULL)
    os.sched_setaffinity(hog.pid, {cpu})
    return hog


def busy_share(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]],
               cpu: int) -> float:
    """The share of the time between two `cpu_times()` that `cpu` was busy."""
    busy = after[cpu][0] - before[cpu][0]
    return busy / max(1, busy + after[cpu][1] - before[cpu][1])


def test_a_busy_program_on_the_cpu_kept_moves_every_thread_to_one_with_room(world,
                                                                            tmp_path):
    """A program at 100% kept to the console's CPU (another console, a CI neighbour):
    within a few of the watcher's looks every thread of the console is on another CPU,
    and the threads the next wave starts after it are there too. (Before: the console
    stays on the busy CPU, sharing it, while the other idles - the first wait times out.)
    The move needs room elsewhere (the watcher moves where everything took a quarter of a
    core less than the busy program): where the machine's other CPUs stayed busier than
    0.7 through the wait (a loaded test run), the test cannot tell and skips."""
    w = world(["a", "b", "c"], strategies=CANARY, readiness_delay=0.3, jitter=0.0)
    for cid in ("b", "c"):   # the second wave's rollouts stay running while we look
        w.fleet.set_faults(cid, hold_ready=["v2"])
    hog = None
    try:
        with Deploy.gated_canary(w.config_path, tmp_path) as deploy:
            rid = deploy.at_gate()
            kept = set(cpus_of_threads(deploy.proc.pid).values())
            assert len(kept) == 1, kept
            kept_cpu = int(kept.pop())
            hog = busy_on(kept_cpu)
            looked = cpu_times()

            def moved() -> set[str] | None:
                cpus = set(cpus_of_threads(deploy.proc.pid).values())
                return cpus if len(cpus) == 1 and cpus != {str(kept_cpu)} else None
            try:
                target = wait_for(moved, timeout=60,
                                  what="the console's threads to leave the busy CPU").pop()
            except AssertionError:
                now = cpu_times()
                others = [busy_share(looked, now, c) for c in os.sched_getaffinity(0)
                          if c != kept_cpu]
                deploy.proc.kill()
                if min(others) > 0.7:
                    pytest.skip(f"no room on the other CPUs ({others} busy) to move to")
                raise
            assert int(target) in os.sched_getaffinity(0)
            at_gate = set(cpus_of_threads(deploy.proc.pid))
            assert control(w.config_path, rid, "approve").returncode == 0
            wait_for(lambda: len(deploy.kinds("cluster_started")) == 3, timeout=60,
                     what="the second wave's starts")
            threads = cpus_of_threads(deploy.proc.pid)
            deploy.proc.kill()
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    assert set(threads) - at_gate, "the second wave started no thread"
    assert set(threads.values()) == {target}, threads


@pytest.mark.parametrize("spread", [False, True], ids=["one-cpu", "all-cpus"])
def test_the_consoles_engine_process_keeps_to_one_cpu_unless_told(world, monkeypatch, spread):
    """The TUI's engine process (`console.engine.host`) runs the same threads as `deploy`:
    kept to one CPU, and spread with `RELEASE_CONSOLE_ALL_CPUS=1`. (Before: spread.)"""
    from console.engine.remote import EngineProcess

    w = world(["a", "b"], readiness_delay=0.1, jitter=0.0)
    if spread:
        monkeypatch.setenv("RELEASE_CONSOLE_ALL_CPUS", "1")
    else:
        monkeypatch.delenv("RELEASE_CONSOLE_ALL_CPUS", raising=False)
    process = EngineProcess(w.config_path, on_events=lambda _batch: None,
                            approver=w.approve, on_warning=lambda _text: None)
    try:
        process.wait_ready()
        assert [s.reachable for s in process.status()] == [True, True]   # threads ran
        threads = cpus_of_threads(process.pid)
    finally:
        process.close()
    assert_kept_or_spread(threads, spread)


@pytest.mark.parametrize("spread", [False, True], ids=["one-cpu", "all-cpus"])
def test_a_fleet_rollback_keeps_its_threads_on_one_cpu_unless_told(world, tmp_path, spread):
    """`rollback --release` runs a rollback thread per cluster, as `deploy` does: kept to
    one CPU, spread with `--all-cpus`. Read while its rollbacks wait for pods held not
    Ready. (Before: spread.)"""
    w = world(["a", "b", "c"], readiness_delay=0.1, jitter=0.0)
    config = str(w.config_path)
    assert main(["deploy", "--config", config, "--tag", "v1"]) == 0
    with Deploy(w.config_path, tmp_path, "--tag", "v2") as deploy:
        assert deploy.finish() == 0, deploy.stderr()
    release = deploy.release_id
    for cid in ("a", "b", "c"):
        w.fleet.set_faults(cid, hold_ready=["v1"])
    env = {**os.environ, "RELEASE_CONSOLE_CONFIG": config}
    rollback = subprocess.Popen(
        [sys.executable, "-m", "console", "rollback", "--release", release, "--yes",
         *(["--all-cpus"] if spread else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env=env, cwd=tmp_path)
    try:
        # Its three rollbacks wait for v1's pods: every cluster's Deployment says v1.
        wait_for(lambda: all(w.version(c) == "v1" for c in "abc"), timeout=60,
                 what="the rollbacks to start")
        threads = cpus_of_threads(rollback.pid)
    finally:
        rollback.kill()
        rollback.wait()
    assert len(threads) > 3, threads
    assert_kept_or_spread(threads, spread)
