"""Where the console finds the upstream programs it runs: helm, and the lab's components.

`make bin` builds pinned etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
KWOK and helm from their Go modules into `.cache/bin/` of a checkout (and keeps a copy
machine-wide under `~/.cache/release-console/`). `$RELEASE_CONSOLE_BIN` (folders, an
explicit choice) is looked at first, then the checkout's pinned builds, and `PATH` last: a
different helm or etcd that happens to be on PATH must not silently replace the pinned
one. A plain `pip install .` has no checkout, so there PATH is what counts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# The checkout this package was imported from (console/ sits at its top).
CHECKOUT_BIN = Path(__file__).resolve().parent.parent / ".cache" / "bin"


def search_path() -> list[Path]:
    """The folders looked at before PATH, in order."""
    extra = os.environ.get("RELEASE_CONSOLE_BIN", "")
    return [Path(p) for p in extra.split(os.pathsep) if p] + [CHECKOUT_BIN]


def find(name: str) -> Path | None:
    """The executable `name` from the built-binaries folders or PATH, or None."""
    for folder in search_path():
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which(name)
    return Path(on_path) if on_path else None


def require(name: str) -> Path:
    """Like `find`, but a missing program is a `UserError` that says how to get it."""
    from console.errors import UserError

    found = find(name)
    if found is None:
        looked = ", ".join(str(p) for p in search_path())
        raise UserError(f"{name} not found on PATH nor in {looked}: run `make bin` in a "
                        f"checkout (builds it from its pinned Go module), or put {name} on PATH")
    return found
