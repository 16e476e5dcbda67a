"""Small helpers over stored objects: timestamps, owner references, conditions, readiness."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]
# The letters of generated names (pod-template-hash, pod suffixes), as Kubernetes' own.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_iso(at: float) -> str:
    """RFC 3339 UTC timestamp of `at` (the cluster clock's time), seconds precision, as the
    API server writes them."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def owner(obj: Obj) -> dict[str, Any] | None:
    """The ownerReference with controller: true, or None."""
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def owned_by(objs: Iterable[Obj], uid: str) -> list[Obj]:
    """Those of `objs` whose controlling owner has `uid`."""
    return [o for o in objs if (ref := owner(o)) is not None and ref.get("uid") == uid]


def condition(obj: Obj, ctype: str) -> dict[str, Any] | None:
    """The status condition of type `ctype`, or None."""
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return c
    return None


def pod_ready(pod: Obj) -> bool:
    """Whether a pod's Ready condition is True."""
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True") and not pod["metadata"].get("deletionTimestamp")
