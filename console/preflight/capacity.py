"""The `capacity` check: do the release's pods fit, as the scheduler will see it?

For each workload of the rendered manifests, the pods the release will need at once: its
replicas, plus the rollout's surge (`maxSurge` of a RollingUpdate, rounded up as the
Deployment controller does) when the Deployment already runs. Each pod requests the sum of
its containers' requests (or its largest init container, if larger), plus one of the
node's `pods` slots.

What is free: per schedulable node (not cordoned, no NoSchedule/NoExecute taint the pods
do not tolerate), its allocatable minus the requests of the pods already placed on it that
have not ended. The app's own running pods are not counted as placed: the release replaces
them, and its new pods are counted in full instead (replicas + surge is the most that run
at once during the rollout).

The release fits when, in total, each resource is enough, and when the pods, placed one by
one on the node with the most room (as a spread scheduler would), all find a node. A
failure names the cluster, the resource, what is needed and what is free.

Reads: the nodes, and the pods of every namespace (one list, ended pods filtered out by
the server). Credentials that may not list pods outside the app's namespace get a check
that counts only the pods they can see, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from console.errors import UserError
from console.kube.client import ClusterError, KubeClient
from console.preflight.manifests import quantity, render_for, rendered
from console.preflight.model import PING_TIMEOUT, CheckResult, ClusterContext, as_kube

RESOURCES = ("cpu", "memory", "pods")
LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
PAGE = 500


@dataclass
class Node:
    """One schedulable node and what is still free on it."""

    name: str
    allocatable: dict[str, float]
    free: dict[str, float]
    taints: list[Mapping[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Workload:
    """The pods one rendered workload needs at once."""

    label: str          # "Deployment web"
    pods: int
    request: dict[str, float]
    tolerations: tuple[Mapping[str, Any], ...]
    namespace: str
    selector: Mapping[str, str]


def pod_request(pod_spec: Mapping[str, Any]) -> dict[str, float]:
    """What one pod requests, as the scheduler counts it (cpu cores, memory bytes, 1 pod)."""
    def of(container: Any) -> dict[str, float]:
        req = (((container or {}).get("resources") or {}).get("requests") or {}) \
            if isinstance(container, Mapping) else {}
        return {r: quantity(req.get(r, 0)) or 0.0 for r in ("cpu", "memory")}

    main = [of(c) for c in pod_spec.get("containers") or []]
    init = [of(c) for c in pod_spec.get("initContainers") or []]
    overhead = pod_spec.get("overhead") or {}
    out: dict[str, float] = {}
    for r in ("cpu", "memory"):
        # Init containers run one at a time before the others start.
        out[r] = max([sum(c[r] for c in main)] + [c[r] for c in init]) + \
            (quantity(overhead.get(r, 0)) or 0.0)
    out["pods"] = 1.0
    return out


def _surge(spec: Mapping[str, Any], replicas: int) -> int:
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    raw = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(raw, str) and raw.endswith("%"):
        try:
            return math.ceil(replicas * float(raw[:-1]) / 100)
        except ValueError:
            return 0
    return int(raw) if isinstance(raw, int) and not isinstance(raw, bool) else 0


def workloads(objects: Sequence[Mapping[str, Any]], namespace: str,
              running: bool) -> list[Workload]:
    """The pods each workload of `objects` needs at once (`running`: the app runs already)."""
    out = []
    for obj in objects:
        spec = obj.get("spec") or {}
        template = (spec.get("template") or {}).get("spec") if isinstance(spec, Mapping) else None
        if not isinstance(template, Mapping):
            continue
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            continue   # `values` and `dry-run` report it
        pods = replicas + (_surge(spec, replicas) if running and obj.get("kind") == "Deployment"
                           else 0)
        out.append(Workload(f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}",
                            pods, pod_request(template),
                            tuple(t for t in template.get("tolerations") or []
                                  if isinstance(t, Mapping)),
                            namespace,
                            dict((spec.get("selector") or {}).get("matchLabels") or {})))
    return out


def _tolerated(taint: Mapping[str, Any], tolerations: Sequence[Mapping[str, Any]]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (not tol.get("key")
                                                 or tol.get("key") == taint.get("key")):
            return True
        if tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _list_all(kube: KubeClient, path: str, query: Mapping[str, str]) -> list[dict]:
    items: list[dict] = []
    token = ""
    while True:
        page = kube.request("GET", path, {**query, "limit": PAGE, "continue": token or None},
                            timeout=PING_TIMEOUT)
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return items


def read_nodes(kube: KubeClient, namespace: str,
               own: Sequence[Workload]) -> tuple[list[Node], str]:
    """The schedulable nodes with their free resources, and a note (what was not counted)."""
    nodes: dict[str, Node] = {}
    for item in _list_all(kube, "/api/v1/nodes", {}):
        spec = item.get("spec") or {}
        if spec.get("unschedulable"):
            continue
        alloc = (item.get("status") or {}).get("allocatable") or {}
        amounts = {r: quantity(alloc.get(r, 0)) or 0.0 for r in RESOURCES}
        name = str((item.get("metadata") or {}).get("name", "?"))
        nodes[name] = Node(name, amounts, dict(amounts),
                           [t for t in spec.get("taints") or []
                            if t.get("effect") in ("NoSchedule", "NoExecute")])
    note = ""
    try:
        pods = _list_all(kube, "/api/v1/pods", {"fieldSelector": LIVE_PODS})
    except ClusterError as exc:
        if exc.status != 403:
            raise
        pods = _list_all(kube, f"/api/v1/namespaces/{namespace}/pods",
                         {"fieldSelector": LIVE_PODS})
        note = (f"; only namespace {namespace}'s pods counted as placed (the credentials may "
                "not list pods cluster-wide)")
    for pod in pods:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        node = nodes.get(str(spec.get("nodeName") or ""))
        if node is None or _replaced(meta, own):
            continue
        for r, amount in pod_request(spec).items():
            node.free[r] -= amount
    return list(nodes.values()), note


def _replaced(meta: Mapping[str, Any], own: Sequence[Workload]) -> bool:
    """Whether a placed pod is one of the app's, which the release replaces."""
    labels = meta.get("labels") or {}
    return any(w.selector and meta.get("namespace") == w.namespace
               and all(labels.get(k) == v for k, v in w.selector.items()) for w in own)


def fit(nodes: Sequence[Node], needs: Sequence[Workload]) -> str | None:
    """None when every pod finds a node; else why not (total first, then per node)."""
    for r in RESOURCES:
        needed = sum(w.pods * w.request[r] for w in needs)
        free = sum(max(0.0, n.free[r]) for n in nodes)
        if needed > free + 1e-9:
            total = sum(n.allocatable[r] for n in nodes)
            parts = " + ".join(f"{w.pods} x {_amount(r, w.request[r])}" for w in needs if w.pods)
            return (f"{r}: needs {_amount(r, needed)} ({parts}) but {_amount(r, free)} is free "
                    f"of {_amount(r, total)} allocatable on {len(nodes)} node(s)")
    free = {n.name: dict(n.free) for n in nodes}
    for w in needs:
        usable = [n for n in nodes if all(_tolerated(t, w.tolerations) for t in n.taints)]
        for placed in range(w.pods):
            room = [n for n in usable if all(free[n.name][r] >= w.request[r] - 1e-9
                                             for r in RESOURCES)]
            if not room:
                short = _shortest(usable, free, w.request)
                return (f"per node: {w.label}'s pod {placed + 1} of {w.pods} fits on no node "
                        f"({short})")
            best = max(room, key=lambda n: (free[n.name]["cpu"], free[n.name]["memory"]))
            for r in RESOURCES:
                free[best.name][r] -= w.request[r]
    return None


def _shortest(nodes: Sequence[Node], free: Mapping[str, Mapping[str, float]],
              request: Mapping[str, float]) -> str:
    if not nodes:
        return "every node is cordoned or tainted against these pods"
    out = []
    for r in RESOURCES:
        most = max(max(0.0, free[n.name][r]) for n in nodes)
        if most < request[r] - 1e-9:
            out.append(f"{r}: needs {_amount(r, request[r])} on one node, the most free on one "
                       f"node is {_amount(r, most)}")
    return "; ".join(out) or "no node has room for all of its requests at once"


def check_capacity(client: Any, config: Any, cluster: Any, tag: str,
                   objects: Sequence[dict] | None = None,
                   running: bool | None = None) -> CheckResult:
    """The release's pods fit the cluster's free capacity (see the module doc).

    `running` says whether the app's Deployment already runs (its rollout surges); None
    counts the surge as well.
    """
    cid, ns = cluster.id, cluster.namespace
    try:
        objects = render_for(config, cluster, tag, objects)
    except UserError as exc:
        return CheckResult("capacity", False, f"render failed: {exc}", cid)
    needs = workloads(objects, ns, running is not False)
    try:
        nodes, note = read_nodes(as_kube(client, cid), ns, needs)
    except ClusterError as exc:
        return CheckResult("capacity", False, f"cannot read the nodes and pods: {exc.reason}",
                           cid)
    if not nodes:
        return CheckResult("capacity", False, f"cluster {cid!r}: no schedulable node", cid)
    if not needs:
        return CheckResult("capacity", True, f"no pods to place{note}", cid)
    problem = fit(nodes, needs)
    if problem:
        return CheckResult("capacity", False, f"cluster {cid!r}: the release's pods do not fit: "
                           f"{problem}{note}", cid)
    pods = sum(w.pods for w in needs)
    wanted = {r: sum(w.pods * w.request[r] for w in needs) for r in ("cpu", "memory")}
    free = {r: sum(max(0.0, n.free[r]) for n in nodes) for r in ("cpu", "memory")}
    return CheckResult("capacity", True, f"{pods} pod(s) fit: cpu {_amount('cpu', wanted['cpu'])}"
                       f" of {_amount('cpu', free['cpu'])} free, memory "
                       f"{_amount('memory', wanted['memory'])} of "
                       f"{_amount('memory', free['memory'])} free on {len(nodes)} node(s){note}",
                       cid)


def capacity_check(ctx: ClusterContext) -> CheckResult:
    """`check_capacity` with what the `live` check found (an update surges, a first
    release does not)."""
    running = ctx.live.exists if ctx.live is not None else None
    return check_capacity(ctx.driver.client, ctx.config, ctx.cluster, ctx.tag, rendered(ctx),
                          running)


def _amount(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{value:g}" if value >= 1 or value == 0 else f"{value * 1000:g}m"
    if resource == "pods":
        return f"{value:g} pod(s)"
    for unit, factor in (("Gi", 2 ** 30), ("Mi", 2 ** 20), ("Ki", 2 ** 10)):
        if value >= factor:
            return f"{value / factor:.3g}{unit}"
    return f"{value:g}"
