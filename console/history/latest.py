"""The latest-version index: per cluster, what the ledger last recorded there.

Serves the version matrix, `last_good` and drift without re-reading a big ledger.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CACHE_VERSION = 1  # of the cache file's own format (not the record schema)

class LatestIndex:
    """Per cluster, its latest `cluster` record with a version and its latest good one.

    What the matrix, `last_good` and drift need, without re-reading a big ledger: the
    answers are cached in `.git/release-console/<app>.latest.json` (never committed)
    together with the file size they hold for and a hash of the bytes just before it.
    A query folds in only the lines appended since; a cluster asked about for the first
    time is looked up by reading the file backwards, stopping as soon as it is found
    and skipping whole blocks that do not mention it. If the file changed other than by
    appending (a merge), the cache is dropped and rebuilt the same way.
    """

    TAIL = 256          # bytes hashed to recognise "the same file, appended to"
    BLOCK = 1 << 16

    def __init__(self, file: Path, store: Path) -> None:
        """Index `file` (a record file), caching in `store`."""
        self.file = file
        self.store = store
        self._lock = threading.Lock()
        self._state: dict[str, Any] | None = None

    def lookup(self, clusters: Sequence[str]) -> dict[str, tuple[dict | None, dict | None]]:
        """(latest record with a version, latest good record) per cluster, as of now."""
        with self._lock:
            try:
                handle = open(self.file, "rb")
            except FileNotFoundError:
                return {name: (None, None) for name in clusters}
            with handle:
                state, changed = self._current(handle)
                known = state["clusters"]
                missing = [name for name in dict.fromkeys(clusters) if name not in known]
                if missing:
                    known.update(self._scan_back(handle, state["size"], missing))
                    changed = True
            if changed:
                self._save(state)
            self._state = state
            return {name: tuple(known[name]) for name in clusters}  # type: ignore[misc]

    def _current(self, handle: Any) -> tuple[dict[str, Any], bool]:
        """The cached state brought up to the file's last complete line."""
        end = _complete_end(handle)
        state = self._state or self._load()
        if state is None or state["size"] > end or state["tail"] != _tail_hash(
                handle, state["size"], self.TAIL):
            state = {"v": CACHE_VERSION, "size": end, "clusters": {}}
            state["tail"] = _tail_hash(handle, end, self.TAIL)
            return state, True
        if state["size"] == end:
            return state, False
        handle.seek(state["size"])
        known = state["clusters"]
        for line in handle.read(end - state["size"]).split(b"\n"):
            rec = _cluster_line(line)
            if rec is None or rec.get("cluster") not in known or rec.get("version") is None:
                continue
            entry = known[rec["cluster"]]
            entry[0] = rec
            if rec.get("good"):
                entry[1] = rec
        state["size"] = end
        state["tail"] = _tail_hash(handle, end, self.TAIL)
        return state, True

    def _scan_back(self, handle: Any, end: int, clusters: list[str]) -> dict[str, list]:
        """Read [0, end) backwards for `clusters` until each has both answers."""
        found: dict[str, list] = {name: [None, None] for name in clusters}
        wanted = {name.encode(): name for name in clusters}
        position, carry = end, b""
        while position > 0 and wanted:
            step = min(self.BLOCK, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + carry
            if position > 0:
                cut = chunk.find(b"\n")
                if cut < 0:
                    carry = chunk  # one long line: keep reading
                    continue
                # The first line may start in the block before: carry it over.
                carry, body = chunk[:cut], chunk[cut + 1:]
            else:
                carry, body = b"", chunk
            # Skip blocks that do not mention a wanted cluster: a substring search for a
            # few names, one pass collecting the names in the block for many.
            if len(wanted) <= 16:
                if not any(b'"cluster":"' + name + b'"' in body for name in wanted):
                    continue
            elif wanted.keys().isdisjoint(_CLUSTER_NAME.findall(body)):
                continue
            for line in reversed(body.split(b"\n")):
                if not line.startswith(b'{"type":"cluster"'):
                    continue
                name = _cluster_name(line)
                if name is not None and name not in wanted:
                    continue
                rec = _cluster_line(line)
                if rec is None or rec.get("version") is None:
                    continue
                key = rec.get("cluster", "")
                if key.encode() not in wanted:
                    continue
                entry = found[key]
                if entry[0] is None:
                    entry[0] = rec
                if rec.get("good") and entry[1] is None:
                    entry[1] = rec
                if entry[0] is not None and entry[1] is not None:
                    del wanted[key.encode()]
                    if not wanted:
                        break
        return found

    def _load(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.store.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and state.get("v") == CACHE_VERSION else None

    def _save(self, state: dict[str, Any]) -> None:
        """Write the cache atomically; a cache that cannot be written is only slower."""
        try:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.store.with_name(f"{self.store.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.store)
        except OSError:
            pass


def _complete_end(handle: Any) -> int:
    """The offset just after the last newline of the file (what is safe to read)."""
    size = handle.seek(0, os.SEEK_END)
    position = size
    while position > 0:
        step = min(LatestIndex.BLOCK, position)
        position -= step
        handle.seek(position)
        cut = handle.read(step).rfind(b"\n")
        if cut >= 0:
            return position + cut + 1
    return 0


def _tail_hash(handle: Any, end: int, length: int) -> str:
    start = max(0, end - length)
    handle.seek(start)
    return hashlib.sha1(handle.read(end - start)).hexdigest()


_CLUSTER_NAME = re.compile(rb'"cluster":"([^"\\]*)"')


def _cluster_name(line: bytes) -> bytes | None:
    """The cluster of a record line written by this module, without parsing JSON."""
    start = line.find(b',"cluster":"')
    if start < 0:
        return None
    start += len(b',"cluster":"')
    stop = line.find(b'"', start)
    name = line[start:stop]
    return None if b"\\" in name else name  # escaped names: let JSON decide


def _cluster_line(line: bytes) -> dict[str, Any] | None:
    if not line.startswith(b'{"type":"cluster"'):
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None



__all__ = ["LatestIndex"]
