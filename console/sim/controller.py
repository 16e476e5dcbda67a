"""The control plane of one simulated cluster, driven by store changes and timers: the
timers and the store listener, the cluster's Events, and the ReplicaSet controller.

Deployment -> ReplicaSet (the deployment controller, deployments.py) -> Pods (this
module's ReplicaSet controller makes and deletes them; the kubelet stand-in, kubelet.py,
runs them: Pending -> Running -> Ready after readiness_delay + jitter, or
ErrImagePull/ImagePullBackOff, or CrashLoopBackOff with a rising restartCount).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Callable
from typing import Any

from console.sim.clock import SimClock
from console.sim.deployments import DEPLOY, POD, RS, DeploymentController
from console.sim.faults import ClusterSettings
from console.sim.kubelet import Kubelet
from console.sim.objects import NAME_ALPHABET, now_iso, owned_by, owner, pod_ready
from console.sim.store import Obj, Store, clone

EVENT, NODE = "/events", "/nodes"
_EVENTS_KEPT = 1000


class Controller:
    """The controllers of one cluster (the deployment controller is `deployments`); every
    method runs on the fleet's loop."""

    def __init__(self, cluster_id: str, store: Store, settings: ClusterSettings,
                 loop: asyncio.AbstractEventLoop, rng: random.Random,
                 on_rollout: Callable[[str, bool], None], clock: SimClock | None = None) -> None:
        self.cluster_id = cluster_id
        self.store = store
        self.settings = settings
        self.loop = loop
        self.rng = rng
        self.clock = SimClock.given(clock, loop)
        self._pending: dict[tuple[str, str, str], None] = {}
        self._flush_scheduled = False
        self._timers: set[Any] = set()
        self.paused = False  # a dead cluster's control plane stops too
        self.kubelet = Kubelet(store, settings, rng, self._later, self.record, lambda: self.paused,
                               self.clock)
        self.deployments = DeploymentController(store, settings, self.clock, self.kubelet,
                                                self.schedule, self.record, on_rollout)
        store.listeners.append(self._on_change)

    # --- scheduling ---------------------------------------------------------------------

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        handle: Any = None

        def run() -> None:
            self._timers.discard(handle)  # type: ignore[arg-type]
            fn(*args)
        handle = self.clock.call_later(delay, run)
        self._timers.add(handle)

    def schedule(self, kind: str, namespace: str, name: str, delay: float = 0.0) -> None:
        """Sync one object (`deploy` or `rs`) soon, or after `delay` seconds."""
        if delay > 0:
            self._later(delay, self.schedule, kind, namespace, name)
            return
        self._pending[(kind, namespace, name)] = None
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.paused:
            self._pending.clear()
            return
        rounds = 0
        while self._pending and rounds < 20:
            rounds += 1
            batch, self._pending = list(self._pending), {}
            for kind, ns, name in batch:
                if kind == "deploy":
                    self.deployments.sync(ns, name)
                else:
                    self.sync_replicaset(ns, name)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def stop(self) -> None:
        """Cancel every timer (the fleet is stopping)."""
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()

    def resume(self) -> None:
        """After a revive: look at every Deployment and ReplicaSet again."""
        self.paused = False
        for d in self.store.iter(DEPLOY):
            self.schedule("deploy", d["metadata"]["namespace"], d["metadata"]["name"])
        for rs in self.store.iter(RS):
            self.schedule("rs", rs["metadata"]["namespace"], rs["metadata"]["name"])
        for pod in self.store.iter(POD):
            if not pod_ready(pod):
                self.kubelet.start(pod)

    def _on_change(self, key: str, etype: str, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        if key == DEPLOY:
            if etype == "DELETED":
                self.deployments.forget(ns, meta["name"])
            else:
                self.schedule("deploy", ns, meta["name"])
        elif key == RS:
            ref = owner(obj)
            if ref and ref.get("kind") == "Deployment":
                self.schedule("deploy", ns, ref["name"])
            if etype != "DELETED":
                self.schedule("rs", ns, meta["name"])
        elif key == POD:
            ref = owner(obj)
            if ref and ref.get("kind") == "ReplicaSet":
                self.schedule("rs", ns, ref["name"])
            if etype == "ADDED" and not ref:
                # a pod created directly: bind it to a node once this write has settled
                self.loop.call_soon(self.kubelet.bind, ns, meta["name"], meta["uid"])

    # --- events -------------------------------------------------------------------------

    def record(self, involved: Obj, reason: str, message: str, etype: str = "Normal",
               component: str = "deployment-controller") -> None:
        """Record (or bump the count of) an Event about `involved`."""
        meta = involved["metadata"]
        ns = meta.get("namespace") or "default"
        if self.store.get("/namespaces", "", ns) is None:
            return
        digest = hashlib.sha1(f"{meta.get('uid')}/{reason}/{message}".encode()).hexdigest()[:16]
        name = f"{meta['name']}.{digest}"
        stamp = now_iso(self.clock.time())
        existing = self.store.get(EVENT, ns, name)
        if existing is not None:
            ev = clone(existing)
            ev["count"] = ev.get("count", 1) + 1
            ev["lastTimestamp"] = stamp
            self.store.put(EVENT, ev)
            return
        api_version = "apps/v1" if involved.get("kind") in ("Deployment", "ReplicaSet") else "v1"
        ev = {"kind": "Event", "apiVersion": "v1",
              "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                           "creationTimestamp": stamp},
              "involvedObject": {"kind": involved.get("kind"), "namespace": ns, "name": meta["name"],
                                 "uid": meta.get("uid"), "apiVersion": api_version,
                                 "resourceVersion": meta.get("resourceVersion")},
              "reason": reason, "message": message, "type": etype, "count": 1,
              "source": {"component": component}, "firstTimestamp": stamp, "lastTimestamp": stamp,
              "reportingComponent": component, "reportingInstance": ""}
        self.store.put(EVENT, ev)
        # Events expire in a real cluster (after an hour); here the oldest go past a cap.
        if self.store.count(EVENT) > _EVENTS_KEPT:
            oldest = sorted(self.store.iter(EVENT), key=lambda e: int(e["metadata"]["resourceVersion"]))
            for e in oldest[:_EVENTS_KEPT // 10]:
                self.store.delete(EVENT, e["metadata"]["namespace"], e["metadata"]["name"])

    # --- replicasets --------------------------------------------------------------------

    def sync_replicaset(self, ns: str, name: str) -> None:
        """Create or delete pods so that ns/name has spec.replicas of them; update its status."""
        rs = self.store.get(RS, ns, name)
        if rs is None:
            return
        uid = rs["metadata"]["uid"]
        pods = [p for p in owned_by(self.store.unsorted(POD, ns), uid)
                if not p["metadata"].get("deletionTimestamp")]
        want = rs["spec"].get("replicas", 0)
        if len(pods) < want:
            for _ in range(want - len(pods)):
                pods.append(self._create_pod(rs))
        elif len(pods) > want:
            # not-ready pods first, then the newest
            victims = sorted(pods, key=lambda p: (pod_ready(p), -int(p["metadata"]["resourceVersion"])))
            for pod in victims[:len(pods) - want]:
                self.store.delete(POD, ns, pod["metadata"]["name"])
                self.record(rs, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}",
                            component="replicaset-controller")
                pods.remove(pod)
        ready = sum(1 for p in pods if pod_ready(p))
        wake: list[float] = []
        available = sum(1 for p in pods if self.kubelet.available(p, rs["spec"].get("minReadySeconds", 0) or 0, wake))
        if wake:
            self.schedule("rs", ns, name, min(wake) - self.clock.time() + 0.01)
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": available, "observedGeneration": rs["metadata"].get("generation", 1)}
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        current = self.store.get(RS, ns, name)
        if current is not None and current.get("status") != status:
            fresh = dict(current)
            fresh["status"] = status
            self.store.put(RS, fresh)

    def _create_pod(self, rs: Obj) -> Obj:
        meta = rs["metadata"]
        template = clone(rs["spec"]["template"])
        suffix = "".join(self.rng.choice(NAME_ALPHABET) for _ in range(5))
        spec = template.get("spec", {})
        node = self.kubelet.pick_node(spec)
        stamp = now_iso(self.clock.time())
        containers = spec.get("containers") or []
        status: dict[str, Any] = {"phase": "Pending", "qosClass": "Burstable"}
        if node is None:
            status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "lastTransitionTime": stamp,
                                     "message": f"0/{len(self.store.list(NODE))} nodes are available: "
                                                "Insufficient cpu or memory."}]
        else:
            spec["nodeName"] = node
            status.update(hostIP="10.0.0.1", startTime=stamp, conditions=[
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "Ready", "status": "False", "lastTransitionTime": stamp, "reason": "ContainersNotReady"},
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": stamp,
                 "reason": "ContainersNotReady"}])
            status["containerStatuses"] = [
                {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                 "started": False, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}} for c in containers]
        pod = {"kind": "Pod", "apiVersion": "v1",
               "metadata": {"name": f"{meta['name']}-{suffix}", "namespace": meta["namespace"],
                            "uid": str(uuid.uuid4()), "creationTimestamp": stamp,
                            "labels": dict(template.get("metadata", {}).get("labels") or {}),
                            "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                            "generateName": f"{meta['name']}-",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": meta["name"], "uid": meta["uid"],
                                                 "controller": True, "blockOwnerDeletion": True}]},
               "spec": spec, "status": status}
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        stored = self.store.put(POD, pod)
        self.record(rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                    component="replicaset-controller")
        if node is not None:
            self.kubelet.start(stored)
        return stored
