"""The image tag a release gets when none is typed: the Git commit and the build number.

`3f2a9c1-42` is the short commit of the repository holding the fleet file, then the CI
build number (`$BUILD_NUMBER`, as Jenkins sets it) when there is one - the original
pipeline's convention. Runs `git` (with a timeout), so call it off the UI thread.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_TIMEOUT = 5.0


def default_tag(directory: Path) -> str | None:
    """The default tag for releases from `directory`, or None outside a Git work tree."""
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    build = os.environ.get("BUILD_NUMBER", "").strip()
    return f"{commit}-{build}" if build.isdigit() else commit
