"""`Table` responses (meta.k8s.io/v1) for `kubectl get`, as the API server prints them.

kubectl asks for `as=Table` in Accept; without a Table it would print only NAME and AGE.
Rows carry the object's metadata (PartialObjectMetadata), or the whole object with
`includeObject=Object`.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from console.sim.discovery import ResourceType

Obj = dict[str, Any]
# The cluster clock's time while a table is made (ages count from it, not the machine's).
_NOW: ContextVar[float | None] = ContextVar("table_now", default=None)


def wants_table(accept: str) -> bool:
    """Whether the Accept header asks for a Table first."""
    first = accept.split(",")[0]
    return "as=Table" in first


def age(stamp: str | None, now: float | None = None) -> str:
    """`5s`, `3m`, `2h`, `4d`, as kubectl's HumanDuration (short form)."""
    if not stamp:
        return "<unknown>"
    try:
        then = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return "<unknown>"
    if now is None:
        now = _NOW.get()
    # The cluster clock's time only (never the machine's: under a ManualClock the two
    # part, and an AGE must agree with the creationTimestamp the clock wrote).
    assert now is not None, "age() outside table(): pass the cluster clock's time"
    secs = max(int(now - then), 0)
    if secs < 120:
        return f"{secs}s"
    if secs < 3600 * 2:
        return f"{secs // 60}m"
    if secs < 86400 * 2:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def _pod_status(pod: Obj) -> str:
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or ():
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return waiting["reason"]
    return status.get("phase", "Pending")


def _pod_ready(pod: Obj) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    total = len(pod.get("spec", {}).get("containers") or ())
    return f"{sum(1 for cs in statuses if cs.get('ready'))}/{total}"


def _node_status(node: Obj) -> str:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else "NotReady"
    return "Unknown"


Column = tuple[str, str, int, Callable[[Obj], Any]]


def _name(o: Obj) -> str:
    return o["metadata"]["name"]


def _age(o: Obj) -> str:
    return age(o["metadata"].get("creationTimestamp"))


def _status(o: Obj, key: str) -> int:
    return int((o.get("status") or {}).get(key, 0) or 0)


def _images(o: Obj) -> str:
    return ",".join(c.get("image", "") for c in o["spec"]["template"]["spec"].get("containers") or ())


def _containers(o: Obj) -> str:
    return ",".join(c.get("name", "") for c in o["spec"]["template"]["spec"].get("containers") or ())


def _selector(o: Obj) -> str:
    return ",".join(f"{k}={v}" for k, v in ((o["spec"].get("selector") or {}).get("matchLabels") or {}).items())


COLUMNS: dict[str, Sequence[Column]] = {
    "Namespace": (("Name", "string", 0, _name), ("Status", "string", 0,
                  lambda o: (o.get("status") or {}).get("phase", "Active")), ("Age", "string", 0, _age)),
    "Pod": (("Name", "string", 0, _name), ("Ready", "string", 0, _pod_ready),
            ("Status", "string", 0, _pod_status),
            ("Restarts", "string", 0, lambda o: str(sum(cs.get("restartCount", 0) for cs in
                                                       (o.get("status") or {}).get("containerStatuses") or ()))),
            ("Age", "string", 0, _age),
            ("IP", "string", 1, lambda o: (o.get("status") or {}).get("podIP", "<none>")),
            ("Node", "string", 1, lambda o: o["spec"].get("nodeName", "<none>"))),
    "Deployment": (("Name", "string", 0, _name),
                   ("Ready", "string", 0, lambda o: f"{_status(o, 'readyReplicas')}/{o['spec'].get('replicas', 0)}"),
                   ("Up-to-date", "integer", 0, lambda o: _status(o, "updatedReplicas")),
                   ("Available", "integer", 0, lambda o: _status(o, "availableReplicas")),
                   ("Age", "string", 0, _age), ("Containers", "string", 1, _containers),
                   ("Images", "string", 1, _images), ("Selector", "string", 1, _selector)),
    "ReplicaSet": (("Name", "string", 0, _name),
                   ("Desired", "integer", 0, lambda o: o["spec"].get("replicas", 0)),
                   ("Current", "integer", 0, lambda o: _status(o, "replicas")),
                   ("Ready", "integer", 0, lambda o: _status(o, "readyReplicas")),
                   ("Age", "string", 0, _age), ("Containers", "string", 1, _containers),
                   ("Images", "string", 1, _images), ("Selector", "string", 1, _selector)),
    "Node": (("Name", "string", 0, _name), ("Status", "string", 0, _node_status),
             ("Roles", "string", 0, lambda o: "worker"), ("Age", "string", 0, _age),
             ("Version", "string", 0, lambda o: o["status"]["nodeInfo"]["kubeletVersion"])),
    "Event": (("Last Seen", "string", 0, lambda o: age(o.get("lastTimestamp"))),
              ("Type", "string", 0, lambda o: o.get("type", "")),
              ("Reason", "string", 0, lambda o: o.get("reason", "")),
              ("Object", "string", 0, lambda o: f"{o['involvedObject'].get('kind', '').lower()}/"
                                                f"{o['involvedObject'].get('name', '')}"),
              ("Message", "string", 0, lambda o: o.get("message", ""))),
    "Lease": (("Name", "string", 0, _name),
              ("Holder", "string", 0, lambda o: (o.get("spec") or {}).get("holderIdentity", "")),
              ("Age", "string", 0, _age)),
}
DEFAULT: Sequence[Column] = (("Name", "string", 0, _name), ("Age", "string", 0, _age))


def table(rt: ResourceType, items: Sequence[Obj], rv: int, include_object: bool,
          now: float) -> Obj:
    """A Table of `items` (ages as of `now`, the cluster clock's time)."""
    token = _NOW.set(now)
    try:
        return _table(rt, items, rv, include_object)
    finally:
        _NOW.reset(token)


def _table(rt: ResourceType, items: Sequence[Obj], rv: int, include_object: bool) -> Obj:
    columns = COLUMNS.get(rt.kind, DEFAULT)
    defs = [{"name": name, "type": ctype, "format": "name" if name == "Name" else "",
             "description": name, "priority": prio} for name, ctype, prio, _ in columns]
    rows = []
    for o in items:
        cells = []
        for _, _, _, fn in columns:
            try:
                cells.append(fn(o))
            except (KeyError, TypeError, AttributeError):
                cells.append("<unknown>")
        obj = o if include_object else {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                        "metadata": o["metadata"]}
        rows.append({"cells": cells, "object": obj})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(rv)},
            "columnDefinitions": defs, "rows": rows}
