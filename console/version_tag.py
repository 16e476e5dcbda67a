"""The default image tag of a release, and building the image when it is missing.

The original pipeline tagged images `<short commit>-<build number>`: the short Git commit
of the application repository (the one holding `app.manifests`), then the CI build
number from `$BUILD_NUMBER` (Jenkins and others set it) or, outside CI, the next number
after the highest one in the release history (the caller passes the history's tags).

When that image is not in the registry and the fleet file defines `app.build.command`,
`build_offer` says what would run and `run_build` runs it (the CLI or the console asks
first): a shell command in the fleet file's directory, with the tag in `$RELEASE_TAG`
and the full image reference in `$RELEASE_IMAGE`.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.errors import UserError
from console.redact import scrub

GIT_TIMEOUT = 10.0            # s for `git rev-parse`
BUILD_TIMEOUT = 3600.0        # s a build may run before it is stopped
TAG_ENV = "RELEASE_TAG"
IMAGE_ENV = "RELEASE_IMAGE"
_OUTPUT_TAIL = 20             # lines of build output kept for the result
# `<hex commit>-<number>`: a tag this module made (a build number can be read back).
_DEFAULT_TAG = re.compile(r"[0-9a-f]{7,40}-([0-9]+)")


def short_commit(directory: Path) -> str:
    """The short commit of HEAD of the Git repository holding `directory`; UserError outside one."""
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=GIT_TIMEOUT,
                             stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"{directory}: git did not answer within {GIT_TIMEOUT:g} s; "
                        "pass --tag") from None
    except OSError:
        raise UserError("git is not installed: pass --tag") from None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        raise UserError(f"{directory}: not in a Git repository with a commit, so there is no "
                        "default tag; pass --tag")
    return commit


def next_build_number(history_tags: Iterable[str]) -> int:
    """One more than the highest build number among earlier default tags (1 when none)."""
    numbers = [int(m.group(1)) for tag in history_tags
               if (m := _DEFAULT_TAG.fullmatch(tag or ""))]
    return max(numbers, default=0) + 1


def app_repository(config: Any) -> Path:
    """The application's Git repository, whose commit names the default tag: the
    directory of the fleet file (the original layout keeps clusters.yaml in the app
    repository) when it is in one; else the directory of `app.manifests` (or of a local
    chart) when that is - the demo and `sim` rewrite the fleet file into a temporary
    directory, while the manifests stay in the checkout it came from."""
    fleet_dir = Path(config.path).parent
    chart = config.app.chart
    sources = [Path(chart.chart)] if chart is not None and not chart.is_oci \
        else [Path(config.app.manifests)]
    for candidate in (fleet_dir, *sources):
        if _in_git_repository(candidate):
            return candidate
    return fleet_dir


def _in_git_repository(directory: Path) -> bool:
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "--verify", "-q",
                              "HEAD"], capture_output=True, text=True, timeout=GIT_TIMEOUT,
                             stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def default_tag(app_repo: Path, history_tags: Iterable[str] = (),
                env: Mapping[str, str] | None = None) -> str:
    """`<short commit>-<build>`: `$BUILD_NUMBER` when it is a number, else the next from history."""
    environ = os.environ if env is None else env
    commit = short_commit(app_repo)
    build = str(environ.get("BUILD_NUMBER", "")).strip()
    number = int(build) if build.isdigit() else next_build_number(history_tags)
    return f"{commit}-{number}"


@dataclass(frozen=True)
class BuildOffer:
    """A build the console may offer to run: `command` with `env` added, in `cwd`."""

    command: str
    tag: str
    image: str
    cwd: Path
    reason: str

    @property
    def env(self) -> dict[str, str]:
        """The variables the build command gets."""
        return {TAG_ENV: self.tag, IMAGE_ENV: self.image}


@dataclass(frozen=True)
class BuildResult:
    """How a build ended: `ok` on exit 0; the last lines of its output."""

    ok: bool
    returncode: int | None
    duration: float
    output_tail: str
    detail: str


def build_offer(config: Any, tag: str, image_check: Any) -> BuildOffer | None:
    """The build to offer when `image_check` found the image missing and a command is set.

    `image_check` is the `console.registry.ImageCheck` of `config.app.image:tag`; a
    registry that was unreachable or refused access is not "missing" (no offer).
    """
    command = config.app.build_command
    if not command or image_check.ok or image_check.status != 404:
        return None
    image = config.app.image_ref(tag)
    return BuildOffer(command=command, tag=tag, image=image, cwd=Path(config.path).parent,
                      reason=f"{image} is not in the registry")


def run_build(offer: BuildOffer, timeout: float = BUILD_TIMEOUT,
              on_line: Callable[[str], None] | None = None) -> BuildResult:
    """Run the offered build command (shell), streaming its output lines to `on_line`."""
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=_OUTPUT_TAIL)
    env = {**os.environ, **offer.env}
    try:
        process = subprocess.Popen(offer.command, shell=True, cwd=offer.cwd, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace",
                                   start_new_session=True)
    except OSError as exc:
        return BuildResult(False, None, 0.0, "", f"the build command could not start: "
                           f"{exc.strerror}")
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for raw in stdout:
            # A build prints what it likes (tokens, colour codes): scrubbed where it is
            # read, so the terminal, the TUI's pane and the failure's tail all get it.
            line = scrub(raw.rstrip("\n"))
            tail.append(line)
            if on_line is not None:
                on_line(line)

    # A reader thread, so a build that hangs without printing still meets the timeout.
    reader = threading.Thread(target=read, name="build-output", daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop(process)
    reader.join(timeout=10)
    duration = time.monotonic() - started
    output = "\n".join(tail)
    if timed_out:
        return BuildResult(False, None, duration, output,
                           f"the build ran longer than {timeout:g} s and was stopped")
    ok = process.returncode == 0
    detail = f"built {offer.image} in {duration:.1f} s" if ok else \
        f"the build command exited with {process.returncode}"
    return BuildResult(ok, process.returncode, duration, output, detail)


def _stop(process: subprocess.Popen) -> None:
    """End the build and everything it started (it runs in its own process group)."""
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)
