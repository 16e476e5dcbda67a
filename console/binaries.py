"""Where the console finds the upstream programs it runs: helm, and the lab's components.

`make bin` builds pinned etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
KWOK and helm from their Go modules into `.cache/bin/` of a checkout (and keeps a copy
machine-wide under `~/.cache/release-console/`). A plain `pip install .` has no checkout,
so `PATH` is looked at first, then the checkout's folder, then `$RELEASE_CONSOLE_BIN`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# The checkout this package was imported from (console/ sits at its top).
CHECKOUT_BIN = Path(__file__).resolve().parent.parent / ".cache" / "bin"


def search_path() -> list[Path]:
    """The folders looked at after PATH, in order."""
    folders = [CHECKOUT_BIN]
    extra = os.environ.get("RELEASE_CONSOLE_BIN", "")
    folders += [Path(p) for p in extra.split(os.pathsep) if p]
    return folders


def find(name: str) -> Path | None:
    """The executable `name` from PATH or the built-binaries folders, or None."""
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    for folder in search_path():
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require(name: str) -> Path:
    """Like `find`, but a missing program is a `UserError` that says how to get it."""
    from console.errors import UserError

    found = find(name)
    if found is None:
        looked = ", ".join(str(p) for p in search_path())
        raise UserError(f"{name} not found on PATH nor in {looked}: run `make bin` in a "
                        f"checkout (builds it from its pinned Go module), or put {name} on PATH")
    return found
