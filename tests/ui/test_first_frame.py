"""The console's first frame comes before the fleet file is read, and before the engine's,
Kubernetes' and the other screens' modules are imported (issue 16: first frame < 1 s with
1,000 clusters on a loaded 2-core machine, where every CPU millisecond before the frame
is wall time).

The fleet file in these tests is a named pipe: reading it blocks until the test writes
the fleet into it, so the first frame provably does not wait for the read. Once written,
the pipe is replaced by a regular file with the same text, for the engine process, which
reads the fleet file again when the console starts it (after the read).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from console.ui.app import ReleaseConsoleApp

from .conftest import fleet_yaml
from .ui_helpers import story, wait_for

IDS = [f"prod-{i:03d}" for i in range(40)]
UNBLOCK = 20.0   # s

# Not needed to draw the fleet screen: the engine (and the Kubernetes client, credentials,
# the ledger it opens), the other screens, Git.
HEAVY = ("console.engine", "console.kube", "console.credentials", "console.history",
         "console.preflight", "console.session", "console.registry", "kubernetes", "git",
         "console.ui.screens.history", "console.ui.screens.detail",
         "console.ui.screens.release_form", "console.ui.screens.follow")


def _fill(fifo: Path, text: str) -> bool:
    """Write the fleet into the pipe if the console is waiting on it (False if not), then
    put a regular file with the same text in the pipe's place."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:   # no reader (yet, or any more)
        return False
    with os.fdopen(fd, "w") as pipe:
        pipe.write(text)
    _replace_pipe(fifo, text)
    return True


def _replace_pipe(fifo: Path, text: str) -> None:
    regular = fifo.with_suffix(".regular")
    regular.write_text(text)
    os.replace(regular, fifo)


def _header_text(app: ReleaseConsoleApp) -> str:
    group = app.fleet.header._render_release()
    return "\n".join(t.plain for t in group.renderables)


@story
async def test_the_first_frame_shows_the_console_loading_then_the_grid_fills_in(
        tmp_path: Path) -> None:
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    text = fleet_yaml(IDS, tmp_path / "history")
    app = ReleaseConsoleApp(str(fifo), status_interval=0)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            # Drawn while the fleet file cannot have been read (nobody wrote the pipe).
            assert app.config is None and not app.fleet_loaded.is_set()
            assert "loading the fleet file" in _header_text(app)
            assert f"loading the fleet from {fifo}" in app.fleet.grid.render_line(1).text
            assert app.fleet.grid.shown == []
            # Screens that need the fleet file say it is still loading.
            await pilot.press("n")
            assert len(app.screen_stack) == 1
            await wait_for(pilot, lambda: _fill(fifo, text), what="the reader on the pipe")
            await asyncio.wait_for(app.fleet_loaded.wait(), 30)
            await pilot.pause()
            assert app.config is not None and app.config.app.name == "user-service"
            assert app.fleet.grid.shown == IDS
            assert "prod-000" in app.fleet.grid.render_line(1).text
            assert f"user-service · {len(IDS)} clusters" in _header_text(app)
            assert "loading" not in app.fleet.grid.render_line(1).text
    finally:
        if fifo.is_fifo():   # a failed test leaves no reader blocked on the pipe
            _fill(fifo, text)


def test_leaving_the_follow_screen_before_the_engine_started_does_not_block_the_ui(
        tmp_path: Path) -> None:
    """The follow screen, left while the console still reads the fleet file (so its engine
    has not started), tells the engine to stop following from a worker: waiting on the UI
    thread for the engine froze the console until the fleet file was read - and, as the
    read's answer needed that same thread, for ever. So the console runs in a process of
    its own, bounded: a frozen one fails this test with a message instead of hanging the
    run until the suite's timeout."""
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    (tmp_path / "fleet.txt").write_text(fleet_yaml(IDS, tmp_path / "history"))
    # The pipe is filled UNBLOCK s after the follow screen is left (so that a UI frozen
    # only until the read ends, and then the check below fails).
    script = textwrap.dedent(f"""
        import asyncio, faulthandler, json, os, stat, threading, time
        from console.ui.app import ReleaseConsoleApp

        # Stuck: every thread's stack on stderr before the test gives up on this process.
        faulthandler.dump_traceback_later({UNBLOCK + 45}, exit=False)
        app = ReleaseConsoleApp({str(fifo)!r}, status_interval=0)

        filling = threading.Lock()   # the timer's fill and the last one, one at a time

        def fill(wait):
            # The fleet into the pipe - once the console's reader opens it (wait), or only
            # if it is on it already - then a regular file in the pipe's place, for the
            # engine process, which reads the fleet file again (on the pipe it would wait
            # for ever, and the console's end for it).
            with open({str(tmp_path / "fleet.txt")!r}) as source:
                text = source.read()
            with filling:
                if not stat.S_ISFIFO(os.stat({str(fifo)!r}).st_mode):
                    return   # filled already
                try:
                    fd = os.open({str(fifo)!r}, os.O_WRONLY | (0 if wait else os.O_NONBLOCK))
                except OSError:
                    return   # no reader (yet)
                with os.fdopen(fd, "w") as pipe:
                    pipe.write(text)
                with open({str(tmp_path / "regular")!r}, "w") as regular:
                    regular.write(text)
                os.replace({str(tmp_path / "regular")!r}, {str(fifo)!r})

        async def until(what, predicate):
            deadline = time.monotonic() + 30
            while not predicate():
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out waiting for {{what}}")
                await pilot_.pause(0.05)

        async def leave_follow(pilot):
            global pilot_
            pilot_ = pilot
            await pilot.pause()
            await pilot.press("f")
            await until("the follow screen", lambda: app.screen.id == "follow")
            unblock = threading.Timer({UNBLOCK}, fill, (False,))
            unblock.start()
            left = time.monotonic()
            await pilot.press("escape")
            await until("the fleet screen", lambda: len(app.screen_stack) == 1)
            print(json.dumps({{"took": time.monotonic() - left,
                              "loaded": app.fleet_loaded.is_set()}}), flush=True)
            unblock.cancel()
            # The console's reader ends too: it may reach the pipe only now (its thread
            # imports the fleet file's modules first), so this fill waits for it: one that
            # found no reader yet would leave it blocked on the pipe, and the console's
            # end waiting for that thread.
            await asyncio.to_thread(fill, True)
            app.exit()

        app.run(headless=True, size=(120, 36), auto_pilot=leave_follow)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_CONSOLE_")}
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=UNBLOCK + 60, env=env)
    except subprocess.TimeoutExpired as stuck:
        # What the child printed, to tell a frozen console from a hung test script.
        said = [(part or b"")[-20000:] for part in (stuck.stdout, stuck.stderr)]
        raise AssertionError("the console froze for good after the follow screen was left "
                             f"while the fleet file was read; its stdout, stderr: {said}") \
            from stuck
    import json
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, (out.stdout[-2000:], out.stderr[-3000:])
    seen = json.loads(lines[0])
    # Answered at once, while the fleet file was still unread.
    assert seen["took"] < UNBLOCK / 2 and not seen["loaded"], seen


def _engine_processes(marker: str) -> list[int]:
    """The engine processes (`console.engine.host`) whose fleet file path holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:   # ended meanwhile
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "console.engine.host" in words and any(marker in w for w in words):
            found.append(int(entry.name))
    return found


def test_quitting_as_the_engine_starts_stops_it_and_ends_the_console(tmp_path: Path) -> None:
    """The person quits in the moment the fleet is shown, as the engine's start is asked
    for: the console ends and leaves no engine process behind. Before, the engine's start
    counted as begun once asked for (`_engine_started`), so the app's end neither answered
    the workers waiting in `engine()` nor closed an engine whose process its start worker
    made only after the app had ended: the console waited up to 120 s for an engine that
    would never be ready (or for ever when the start worker, cancelled with the app, never
    ran), and that engine's process stayed. Here the engine process cannot get ready: it
    reads the fleet file again, and the pipe is written only once, for the console."""
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    (tmp_path / "fleet.txt").write_text(fleet_yaml(IDS, tmp_path / "history"))
    script = textwrap.dedent(f"""
        import asyncio, faulthandler, os
        from console.ui.app import ReleaseConsoleApp

        faulthandler.dump_traceback_later(50, exit=False)   # stuck: every thread's stack
        app = ReleaseConsoleApp({str(fifo)!r}, status_interval=0)

        async def quit_as_the_engine_starts(pilot):
            # A refresh waits in engine() for the engine (as the follow screen would).
            await pilot.press("ctrl+r")
            with open({str(tmp_path / "fleet.txt")!r}) as source:
                text = source.read()
            def fill():   # blocks until the console's reader opens the pipe
                with open({str(fifo)!r}, "w") as pipe:
                    pipe.write(text)
            await asyncio.to_thread(fill)
            # Quit as soon as the engine's start is asked for (its worker made).
            while not any(w.group == "engine" for w in app.workers):
                await asyncio.sleep(0)
            app.exit()

        app.run(headless=True, size=(120, 36), auto_pilot=quit_as_the_engine_starts)
        print("ended", app.return_code, flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_CONSOLE_")}
    try:
        try:
            out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                 text=True, timeout=60, env=env)
        except subprocess.TimeoutExpired as stuck:
            said = [(part or b"")[-20000:] for part in (stuck.stdout, stuck.stderr)]
            raise AssertionError("the console did not end after it was quit as its engine "
                                 f"started; its stdout, stderr: {said}") from stuck
        assert "ended 0" in out.stdout, (out.stdout[-2000:], out.stderr[-20000:])
        assert _engine_processes(str(tmp_path)) == []
    finally:   # an engine process left by a failure, blocked on the pipe
        for pid in _engine_processes(str(tmp_path)):
            os.kill(pid, 9)


def test_a_refresh_asked_while_loading_a_fleet_file_that_fails_does_not_keep_the_console(
        tmp_path: Path) -> None:
    """Ctrl+R while the fleet file is read starts a worker that waits for the engine; the
    file then turns out unusable, so no engine ever starts: the console still ends (exit
    2) - the waiting worker kept the process from exiting before."""
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    script = textwrap.dedent(f"""
        import asyncio, os, sys
        from console.ui.app import ReleaseConsoleApp

        app = ReleaseConsoleApp({str(fifo)!r}, status_interval=0)

        async def refresh_then_fail(pilot):
            await pilot.press("ctrl+r")
            def fill():
                with open({str(fifo)!r}, "w") as pipe:
                    pipe.write("app:\\n  name: x\\n")
            await asyncio.to_thread(fill)

        app.run(headless=True, size=(120, 36), auto_pilot=refresh_then_fail)
        print("ended", app.return_code, flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_CONSOLE_")}
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=90, env=env)
    except subprocess.TimeoutExpired as stuck:
        raise AssertionError("the console did not end after its fleet file failed") from stuck
    assert "ended 2" in out.stdout, out.stderr[-3000:]


@story
async def test_a_fleet_file_the_console_cannot_use_ends_it_with_the_error(
        tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("app:\n  name: x\n")
    app = ReleaseConsoleApp(str(bad), status_interval=0)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.fleet_error is not None, what="the fleet error")
    assert app.return_code == 2
    assert str(bad) in app.fleet_error and "clusters" in app.fleet_error


def test_the_first_frame_imports_neither_the_fleet_file_s_modules_nor_the_engine_s(
        tmp_path: Path) -> None:
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    (tmp_path / "fleet.txt").write_text(fleet_yaml(IDS, tmp_path / "history"))
    script = textwrap.dedent(f"""
        import asyncio, json, os, sys
        from console.ui.app import ReleaseConsoleApp

        app = ReleaseConsoleApp({str(fifo)!r}, status_interval=0)
        built = sorted(sys.modules)

        async def first_frame(_pilot):
            frame = asyncio.Event()
            app.fleet.call_after_refresh(frame.set)
            await frame.wait()
            drawn = sorted(sys.modules)
            loading = app.state.loading
            # The console's reader opens the pipe from its worker thread, which the event
            # loop starts: the write waits for it in a thread of its own.
            with open({str(tmp_path / "fleet.txt")!r}) as source:
                text = source.read()
            def fill():
                with open({str(fifo)!r}, "w") as pipe:
                    pipe.write(text)
                with open({str(tmp_path / "regular")!r}, "w") as regular:
                    regular.write(text)
                os.replace({str(tmp_path / "regular")!r}, {str(fifo)!r})   # for the engine

            await asyncio.to_thread(fill)
            await app.fleet_loaded.wait()
            print(json.dumps({{"built": built, "drawn": drawn, "loading": loading,
                              "rows": len(app.fleet.grid.shown)}}), flush=True)
            app.exit()

        app.run(headless=True, size=(120, 36), auto_pilot=first_frame)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_CONSOLE_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    seen = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("{")))
    # The app module and the app object: no fleet-file modules (read after the frame).
    assert [m for m in seen["built"] if m.startswith("console.config")] == []
    # The first frame: none of what only later screens and the engine need.
    heavy = [m for m in seen["drawn"] if m.startswith(HEAVY)]
    assert heavy == []
    assert seen["loading"] == str(fifo)
    assert seen["rows"] == len(IDS)


def test_quitting_while_the_fleet_files_read_hangs_ends_the_console(tmp_path: Path) -> None:
    """`q` while the fleet file's read hangs (a named pipe nobody writes, as a stuck
    network mount would hold it): the console ends at once. Before, the read was a
    Textual thread worker, which runs in asyncio's default executor - and the event
    loop's end (`asyncio.run` shuts that executor down) and the interpreter's exit wait
    for its threads: the console's process never ended."""
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    bound = 15.0
    script = textwrap.dedent(f"""
        from console.ui.app import ReleaseConsoleApp

        app = ReleaseConsoleApp({str(fifo)!r}, status_interval=0)

        async def quit_while_loading(pilot):
            await pilot.pause()
            assert app.config is None and not app.fleet_loaded.is_set()
            await pilot.press("q")

        app.run(headless=True, size=(120, 36), auto_pilot=quit_while_loading)
        print("ended", app.return_code, flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_CONSOLE_")}
    started = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60, env=env)
    except subprocess.TimeoutExpired as stuck:
        said = [(part or b"")[-4000:] for part in (stuck.stdout, stuck.stderr)]
        raise AssertionError("the console did not end after `q` while its fleet file's "
                             f"read hung; its stdout, stderr: {said}") from stuck
    took = time.monotonic() - started
    assert out.returncode == 0 and "ended 0" in out.stdout, (out.stdout[-2000:],
                                                             out.stderr[-4000:])
    assert took < bound, took   # the interpreter's start and the app's, then its end
    assert "Traceback" not in out.stderr, out.stderr[-4000:]
