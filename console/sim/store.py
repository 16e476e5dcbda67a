"""One cluster's objects, resourceVersions, event backlog and watchers.

Everything here runs on the fleet's event loop thread, so there are no locks. Stored objects
are never mutated in place: every write stores a new dict, which lets watch events and the
backlog hold references instead of copies. Readers that want to change an object copy it.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from console.sim.patch import clone as _clone

Obj = dict[str, Any]


class SelectorError(ValueError):
    """A label or field selector that does not parse (the server answers 400)."""


# --- selectors ------------------------------------------------------------------------

_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_terms(text: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for n, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:n])
            start = n + 1
    terms.append(text[start:])
    return [t.strip() for t in terms if t.strip()]


def label_matcher(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """A predicate over a labels dict for a label selector (=, ==, !=, in, notin, exists, !)."""
    if not selector:
        return lambda labels: True
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        for op in ("!=", "==", "="):
            if op in term and "(" not in term:
                key, value = (s.strip() for s in term.split(op, 1))
                if op == "!=":
                    checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
                else:
                    checks.append(lambda lb, k=key, v=value: lb.get(k) == v)
                break
        else:
            m = _SET_RE.match(term)
            if not m:
                raise SelectorError(f"unable to parse requirement: {term!r}")
            neg, key, op, values = m.groups()
            if op:
                vals = {v.strip() for v in values.split(",") if v.strip()}
                if op == "in":
                    checks.append(lambda lb, k=key, vs=vals: lb.get(k) in vs)
                else:
                    checks.append(lambda lb, k=key, vs=vals: lb.get(k) not in vs)
            elif neg:
                checks.append(lambda lb, k=key: k not in lb)
            else:
                checks.append(lambda lb, k=key: k in lb)
    return lambda labels: all(c(labels) for c in checks)


def _field_value(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_matcher(selector: str | None) -> tuple[Callable[[Obj], bool], str | None]:
    """A predicate for a field selector, and the metadata.name it pins (if any)."""
    if not selector:
        return (lambda obj: True), None
    checks: list[Callable[[Obj], bool]] = []
    name: str | None = None
    for term in _split_terms(selector):
        for op in ("!=", "==", "="):
            if op in term:
                path, value = (s.strip() for s in term.split(op, 1))
                if not path:
                    raise SelectorError(f"invalid field selector term {term!r}")
                if op == "!=":
                    checks.append(lambda o, p=path, v=value: _field_value(o, p) != v)
                else:
                    checks.append(lambda o, p=path, v=value: _field_value(o, p) == v)
                    if path == "metadata.name":
                        name = value
                break
        else:
            raise SelectorError(f"invalid field selector term {term!r}")
    return (lambda obj: all(c(obj) for c in checks)), name


# --- watchers -------------------------------------------------------------------------

@dataclass(eq=False)
class Watcher:
    """One open watch: what it selects, and the queue its events go to (None ends it)."""

    key: str
    namespace: str | None
    match: Callable[[Obj], bool]
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)


# --- the store ------------------------------------------------------------------------

class Gone(Exception):
    """The requested resourceVersion is older than the backlog (HTTP 410)."""

    def __init__(self, rv: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {rv} ({oldest})")
        self.oldest = oldest


class Store:
    """Objects by resource key and (namespace, name), with a resourceVersion counter."""

    def __init__(self, backlog: int = 500) -> None:
        self.rv = 1000
        self.start = self.rv  # the history begins here: older resourceVersions are gone
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {}
        # Per resource key, as the API server's watch cache: (rv, type, object) of the latest
        # writes, and the newest resourceVersion that fell out of that window.
        self.backlog = backlog
        self.logs: dict[str, deque[tuple[int, str, Obj]]] = {}
        self.trimmed: dict[str, int] = {}
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[str, str, Obj, Obj | None], None]] = []

    # reads
    def get(self, key: str, namespace: str, name: str) -> Obj | None:
        """The stored object, or None (do not mutate it)."""
        return self.objects.get(key, {}).get((namespace, name))

    def list(self, key: str, namespace: str | None = None) -> list[Obj]:
        """Objects of `key` (in `namespace`, or all), in key order (do not mutate them)."""
        items = self.objects.get(key, {})
        if namespace is None:
            return [items[k] for k in sorted(items)]
        return [items[k] for k in sorted(items) if k[0] == namespace]

    def unsorted(self, key: str, namespace: str) -> list[Obj]:
        """Objects of `key` in `namespace`, in no particular order (cheaper than `list`)."""
        return [o for (ns, _), o in self.objects.get(key, {}).items() if ns == namespace]

    def count(self, key: str) -> int:
        """How many objects of `key` there are."""
        return len(self.objects.get(key, {}))

    def iter(self, key: str) -> Iterator[Obj]:
        """All objects of `key` in no particular order."""
        return iter(list(self.objects.get(key, {}).values()))

    # writes
    def put(self, key: str, obj: Obj) -> Obj:
        """Store `obj` (which the caller hands over) with a new resourceVersion."""
        meta = obj["metadata"]
        slot = (meta.get("namespace", ""), meta["name"])
        bucket = self.objects.setdefault(key, {})
        old = bucket.get(slot)
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        bucket[slot] = obj
        self._emit(key, "MODIFIED" if old is not None else "ADDED", obj, old)
        return obj

    def delete(self, key: str, namespace: str, name: str) -> Obj | None:
        """Remove an object; the DELETED event carries it with a new resourceVersion."""
        bucket = self.objects.get(key, {})
        old = bucket.pop((namespace, name), None)
        if old is None:
            return None
        self.rv += 1
        gone = dict(old)
        gone["metadata"] = dict(old["metadata"], resourceVersion=str(self.rv))
        self._emit(key, "DELETED", gone, old)
        return gone

    def _emit(self, key: str, etype: str, obj: Obj, old: Obj | None) -> None:
        log = self.logs.setdefault(key, deque())
        log.append((self.rv, etype, obj))
        if len(log) > self.backlog:
            self.trimmed[key] = log.popleft()[0]
        for w in list(self.watchers):
            if w.key != key:
                continue
            if w.namespace is not None and obj["metadata"].get("namespace") != w.namespace:
                continue
            now = w.match(obj)
            before = old is not None and w.match(old)
            if etype == "MODIFIED" and now and not before:
                w.queue.put_nowait(("ADDED", obj))
            elif etype == "MODIFIED" and before and not now:
                w.queue.put_nowait(("DELETED", obj))
            elif now:
                w.queue.put_nowait((etype, obj))
        for listener in self.listeners:
            listener(key, etype, obj, old)

    # watches
    def since(self, key: str, rv: int) -> list[tuple[str, Obj]]:
        """Events for `key` newer than `rv`; raises Gone when the backlog no longer reaches it."""
        if rv >= self.rv:
            return []
        oldest = max(self.trimmed.get(key, 0), self.start)
        if rv < oldest:
            raise Gone(rv, oldest + 1)
        return [(etype, obj) for erv, etype, obj in self.logs.get(key, ()) if erv > rv]

    def watch(self, key: str, namespace: str | None, match: Callable[[Obj], bool]) -> Watcher:
        """Register a watcher (remove it with `unwatch`)."""
        w = Watcher(key, namespace, match)
        self.watchers.add(w)
        return w

    def unwatch(self, w: Watcher) -> None:
        """Forget a watcher."""
        self.watchers.discard(w)

    def close_watchers(self) -> None:
        """End every open watch (a dying cluster)."""
        for w in list(self.watchers):
            w.queue.put_nowait(None)
        self.watchers.clear()


def clone(obj: Obj) -> Obj:
    """A deep copy to change and `put` back."""
    return _clone(obj)


def restatus(obj: Obj) -> Obj:
    """A copy to change the status of and `put` back: the status deep, the metadata one
    level deep (`put` writes its resourceVersion), the rest shared with `obj`.

    Stored objects are never changed in place (every writer changes a copy), so the
    versions of an object may share what did not change: a pod's spec is most of its
    bytes, and the kubelet writes each pod's status several times (deep copies of pods
    were 6% of the simulator's CPU in a 1,000-cluster release).
    """
    fresh = dict(obj)
    fresh["metadata"] = dict(obj["metadata"])
    fresh["status"] = _clone(obj.get("status") or {})
    return fresh

