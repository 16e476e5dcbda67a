"""A kubelet and scheduler stand-in for the pods of one cluster, as KWOK fakes them.

Pods are bound to the least-loaded node whose allocatable cpu/memory still fits their
requests (else they stay Pending, Unschedulable). A bound pod goes ContainerCreating ->
Running (not ready) -> Ready after readiness_delay plus random jitter; an image whose tag
never pulls cycles ErrImagePull/ImagePullBackOff and never gets ready; one whose tag crashes
goes CrashLoopBackOff with a rising restartCount.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

from console.sim import faults
from console.sim.clock import SimClock
from console.sim.faults import ClusterSettings
from console.sim.objects import now_iso, pod_ready
from console.sim.store import Obj, Store, clone, restatus

POD, NODE = "/pods", "/nodes"


def _quantity(text: Any) -> float:
    """cpu in cores or memory in bytes from a Kubernetes quantity string."""
    s = str(text or "0").strip()
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
                "Gi": 2**30, "Ti": 2**40}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[:-len(suffix)]) * suffixes[suffix]
    return float(s)


class Kubelet:
    """Binds and runs the pods of one cluster (on the fleet's loop thread)."""

    def __init__(self, store: Store, settings: ClusterSettings, rng: random.Random,
                 later: Callable[..., None], record: Callable[..., None],
                 is_paused: Callable[[], bool], clock: SimClock) -> None:
        self.store = store
        self.settings = settings
        self.rng = rng
        self._later = later  # (delay, fn, *args): a timer the controller cancels on stop
        self.record = record  # Controller.record: Events
        self.is_paused = is_paused
        self.clock = clock
        # pod uid -> when it became Ready (clock time), finer than the condition's seconds
        self.ready_at: dict[str, float] = {}

    def available(self, pod: Obj, min_ready: int, wake: list[float]) -> bool:
        """Ready for at least minReadySeconds; when ready but not yet available, the moment it
        will be goes into `wake` (the caller syncs again then)."""
        if not pod_ready(pod):
            return False
        if min_ready <= 0:
            return True
        since = self.ready_at.get(pod["metadata"]["uid"], 0.0)
        if self.clock.time() >= since + min_ready:
            return True
        wake.append(since + min_ready)
        return False

    def pick_node(self, pod_spec: Obj) -> str | None:
        """The node with the fewest pods that still fits the pod's requests, or None."""
        cpu = mem = 0.0
        for c in pod_spec.get("containers") or ():
            req = (c.get("resources") or {}).get("requests") or {}
            cpu += _quantity(req.get("cpu", 0))
            mem += _quantity(req.get("memory", 0))
        nodes = self.store.list(NODE)
        if not nodes:
            return None
        used: dict[str, list[float]] = {n["metadata"]["name"]: [0.0, 0.0, 0.0] for n in nodes}
        for p in self.store.iter(POD):
            node = p["spec"].get("nodeName")
            if node in used:
                used[node][2] += 1
                for c in p["spec"].get("containers") or ():
                    req = (c.get("resources") or {}).get("requests") or {}
                    used[node][0] += _quantity(req.get("cpu", 0))
                    used[node][1] += _quantity(req.get("memory", 0))
        fits = []
        for n in nodes:
            alloc = n["status"]["allocatable"]
            u = used[n["metadata"]["name"]]
            if u[0] + cpu <= _quantity(alloc["cpu"]) and u[1] + mem <= _quantity(alloc["memory"]):
                fits.append((u[2], u[0], n["metadata"]["name"]))
        return min(fits)[2] if fits else None


    def bind(self, ns: str, name: str, uid: str) -> None:
        """Schedule a pod created without an owner, then start it."""
        pod = self._live((ns, name, uid))
        if pod is None or pod["spec"].get("nodeName"):
            return
        node = self.pick_node(pod["spec"])
        if node is None:
            return
        fresh = clone(pod)
        fresh["spec"]["nodeName"] = node
        stamp = now_iso(self.clock.time())
        fresh["status"] = {"phase": "Pending", "hostIP": "10.0.0.1", "startTime": stamp, "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            {"type": "Ready", "status": "False", "lastTransitionTime": stamp, "reason": "ContainersNotReady"},
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": stamp,
             "reason": "ContainersNotReady"}],
            "containerStatuses": [{"name": c.get("name"), "image": c.get("image", ""), "imageID": "",
                                   "ready": False, "started": False, "restartCount": 0,
                                   "state": {"waiting": {"reason": "ContainerCreating"}}}
                                  for c in fresh["spec"].get("containers") or ()]}
        self.start(self.store.put(POD, fresh))

    def start(self, pod: Obj) -> None:
        """Set the timers that take a bound pod through its life (by its images' tags)."""
        if not pod["spec"].get("nodeName"):
            return
        s = self.settings
        delay = s.readiness_delay + self.rng.uniform(0, s.jitter) if s.jitter > 0 else s.readiness_delay
        meta = pod["metadata"]
        ident = (meta["namespace"], meta["name"], meta["uid"])
        images = [c.get("image", "") for c in pod["spec"].get("containers") or ()]
        if any(faults.matches(i, s.never_pull) for i in images):
            self._later(min(0.3, delay), self._pull_failure, ident, 0)
        elif any(faults.matches(i, s.crash) for i in images):
            self._later(min(0.3, delay), self._crash, ident, 0)
        elif any(faults.matches(i, s.hold_ready) for i in images):
            self._later(delay * 0.3, self._running, ident, False)
            self._later(delay, self._held, ident)
        else:
            self._later(delay * 0.3, self._running, ident, False)
            self._later(delay, self._running, ident, True)

    def crash_running(self) -> int:
        """Running pods whose image the crash fault matches now start crashing, as a
        container that exits after it was Ready does (CrashLoopBackOff, restarts
        rising, not Ready); returns how many. Called when the fault changes."""
        count = 0
        for pod in list(self.store.iter(POD)):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp") or not pod["spec"].get("nodeName"):
                continue
            images = [c.get("image", "") for c in pod["spec"].get("containers") or ()]
            if any(faults.matches(i, self.settings.crash) for i in images):
                restarts = max((int(cs.get("restartCount") or 0) for cs in
                                (pod.get("status") or {}).get("containerStatuses") or ()),
                               default=0)
                self._later(0.0, self._crash, (meta["namespace"], meta["name"], meta["uid"]),
                            restarts + 1)
                count += 1
        return count

    def _live(self, ident: tuple[str, str, str]) -> Obj | None:
        if self.is_paused():
            return None
        pod = self.store.get(POD, ident[0], ident[1])
        if pod is None or pod["metadata"]["uid"] != ident[2]:
            return None
        return pod

    def _held(self, ident: tuple[str, str, str]) -> None:
        """A pod kept not Ready by `hold_ready`: Ready once the setting no longer
        matches its images (looked at every 0.1 s)."""
        pod = self._live(ident)
        if pod is None:
            return
        images = [c.get("image", "") for c in pod["spec"].get("containers") or ()]
        if any(faults.matches(i, self.settings.hold_ready) for i in images):
            self._later(0.1, self._held, ident)
        else:
            self._running(ident, True)

    def _running(self, ident: tuple[str, str, str], ready: bool) -> None:
        pod = self._live(ident)
        if pod is None or pod_ready(pod):
            return
        fresh = restatus(pod)
        stamp = now_iso(self.clock.time())
        status = fresh["status"]
        status["phase"] = "Running"
        status.setdefault("podIP", f"10.244.{self.rng.randint(0, 255)}.{self.rng.randint(2, 254)}")
        status["podIPs"] = [{"ip": status["podIP"]}]
        for cs in status.get("containerStatuses") or ():
            cs["state"] = {"running": {"startedAt": cs.get("state", {}).get("running", {}).get("startedAt", stamp)}}
            cs["started"] = True
            cs["ready"] = ready
            cs["imageID"] = f"{cs['image']}@sha256:{hashlib.sha256(cs['image'].encode()).hexdigest()}"
            cs["containerID"] = f"containerd://{hashlib.sha256(ident[2].encode()).hexdigest()}"
        if ready:
            for c in status.get("conditions") or ():
                if c["type"] in ("Ready", "ContainersReady"):
                    c.update(status="True", lastTransitionTime=stamp)
                    c.pop("reason", None)
            if len(self.ready_at) > 10000:
                self.ready_at.clear()  # a bound on memory; lost entries count as ready long ago
            self.ready_at[ident[2]] = self.clock.time()
        self.store.put(POD, fresh)

    def _still_faulty(self, ident: tuple[str, str, str], patterns: tuple[str, ...]
                      ) -> dict[str, Any] | None:
        """The live pod while one of its images still matches the fault's `patterns`; once
        the fault is lifted (the image "appeared", the crash was fixed) the pod is set to
        run instead, and None."""
        pod = self._live(ident)
        if pod is None:
            return None
        images = [c.get("image", "") for c in pod["spec"].get("containers") or ()]
        if not any(faults.matches(i, patterns) for i in images):
            self._later(self.settings.readiness_delay, self._running, ident, True)
            return None
        return pod

    def _pull_failure(self, ident: tuple[str, str, str], attempt: int) -> None:
        pod = self._still_faulty(ident, self.settings.never_pull)
        if pod is None:
            return
        fresh = restatus(pod)
        reason = "ErrImagePull" if attempt % 2 == 0 else "ImagePullBackOff"
        for cs in fresh["status"].get("containerStatuses") or ():
            if faults.matches(cs["image"], self.settings.never_pull):
                message = (f'rpc error: code = NotFound desc = failed to pull and unpack image '
                           f'"{cs["image"]}": not found' if reason == "ErrImagePull"
                           else f'Back-off pulling image "{cs["image"]}"')
                cs["state"] = {"waiting": {"reason": reason, "message": message}}
                cs["ready"] = False
                self.record(fresh, "Failed" if reason == "ErrImagePull" else "BackOff", message,
                            "Warning", component="kubelet")
        self.store.put(POD, fresh)
        self._later(min(1.0 * 2 ** min(attempt, 4), 10.0), self._pull_failure, ident, attempt + 1)

    def _crash(self, ident: tuple[str, str, str], restarts: int) -> None:
        pod = self._still_faulty(ident, self.settings.crash)
        if pod is None:
            return
        fresh = restatus(pod)
        stamp = now_iso(self.clock.time())
        fresh["status"]["phase"] = "Running"
        for cs in fresh["status"].get("containerStatuses") or ():
            if faults.matches(cs["image"], self.settings.crash):
                cs["restartCount"] = restarts
                cs["ready"] = False
                cs["started"] = False
                cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": stamp,
                                                  "finishedAt": stamp}}
                cs["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                           "message": f"back-off restarting failed container {cs['name']} "
                                                      f"in pod {ident[1]}"}}
                self.record(fresh, "BackOff", "Back-off restarting failed container", "Warning",
                            component="kubelet")
        for c in fresh["status"].get("conditions") or ():
            if c["type"] in ("Ready", "ContainersReady") and c.get("status") == "True":
                # A pod that was Ready stops being Ready when its container exits.
                c.update(status="False", lastTransitionTime=stamp, reason="ContainersNotReady")
        self.store.put(POD, fresh)
        period = max(self.settings.readiness_delay, 0.2) * 2 ** min(restarts, 3)
        self._later(min(period, 10.0), self._crash, ident, restarts + 1)
