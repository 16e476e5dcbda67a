"""The deployment controller of one simulated cluster: a Deployment's ReplicaSets (one per
pod template, `pod-template-hash`, revision annotations and history, owner references),
the rolling update within maxSurge/maxUnavailable or Recreate, the revision history
limit, and status and conditions as the real controller's `syncRolloutStatus` sets them
(see kubernetes-wire.md), with the progress deadline counted from the last progress.

`Controller` (controller.py) owns the timers and the store listener and calls `sync`;
the ReplicaSets' pods are its ReplicaSet controller's and the kubelet's.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

from console.sim.admission import default_pod_spec
from console.sim.clock import SimClock
from console.sim.faults import ClusterSettings
from console.sim.kubelet import Kubelet
from console.sim.objects import NAME_ALPHABET, now_iso, owned_by, owner, pod_ready
from console.sim.patch import prune
from console.sim.store import Obj, Store, clone

DEPLOY, RS, POD = "apps/deployments", "apps/replicasets", "/pods"
REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
# Deployment annotations the controller does not copy to its ReplicaSets.
_NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration", REVISION,
               "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
               "deployment.kubernetes.io/max-replicas")


def _encode(data: bytes, length: int) -> str:
    n = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, len(NAME_ALPHABET))
        out.append(NAME_ALPHABET[r])
    return "".join(out)


def comparable_template(template: Any) -> Any:
    """A pod template as the controller compares them: no hash label, no nulls or empties."""
    t = prune(template) if isinstance(template, dict) else {}  # prune builds new containers
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH, None)
    if isinstance(t.get("spec"), dict):
        default_pod_spec(t["spec"])
    return prune(t)


def template_hash(template: Any) -> str:
    """The `pod-template-hash` of a template (stable across equal templates)."""
    return _encode(json.dumps(comparable_template(template), sort_keys=True).encode(), 10)


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """maxSurge/maxUnavailable: an int, or "25%" of `total` rounded up (surge) or down."""
    if isinstance(value, str) and value.endswith("%"):
        pct = float(value[:-1]) / 100 * total
        return math.ceil(pct) if round_up else math.floor(pct)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class DeploymentController:
    """The deployment controller of one cluster; every method runs on the fleet's loop."""

    def __init__(self, store: Store, settings: ClusterSettings, clock: SimClock,
                 kubelet: Kubelet, schedule: Callable[..., None], record: Callable[..., None],
                 on_rollout: Callable[[str, bool], None]) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.kubelet = kubelet
        self.schedule = schedule      # Controller.schedule: ("deploy", ns, name, delay)
        self.record = record          # Controller.record: Events
        self.on_rollout = on_rollout  # (deployment key, active) -> fleet-wide tracker
        self._progress_at: dict[tuple[str, str], float] = {}
        self._observed_at: dict[tuple[str, str, int], float] = {}
        self._templates: dict[tuple[str, Any], Any] = {}

    def forget(self, ns: str, name: str) -> None:
        """ns/name was deleted: its rollout is over."""
        self._progress_at.pop((ns, name), None)
        self.on_rollout(f"{ns}/{name}", False)

    def _pods_by_rs(self, ns: str) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for pod in self.store.unsorted(POD, ns):
            ref = owner(pod)
            if ref is not None and not pod["metadata"].get("deletionTimestamp"):
                out.setdefault(ref.get("uid", ""), []).append(pod)
        return out

    def sync(self, ns: str, name: str) -> None:
        """One pass of the deployment controller for ns/name."""
        d = self.store.get(DEPLOY, ns, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        meta, spec = d["metadata"], d["spec"]
        generation = meta.get("generation", 1)
        status = d.get("status") or {}
        key = (ns, name)
        if status.get("observedGeneration", 0) < generation and self.settings.lag_generation > 0:
            seen = self._observed_at.setdefault((ns, name, generation),
                                                self.clock.time() + self.settings.lag_generation)
            if self.clock.time() < seen:
                self.schedule("deploy", ns, name, seen - self.clock.time() + 0.001)
                return
        uid = meta["uid"]
        all_rs = owned_by(self.store.unsorted(RS, ns), uid)
        wanted = self._comparable(d)
        new_rs = next((rs for rs in all_rs if self._comparable(rs) == wanted), None)
        old_rs = [rs for rs in all_rs if rs is not new_rs]
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0") or 0) for rs in all_rs]
        max_old = max((int(rs["metadata"].get("annotations", {}).get(REVISION, "0") or 0)
                       for rs in old_rs), default=0)
        new_status = dict(status)
        conditions = [dict(c) for c in status.get("conditions") or ()]
        replicas = spec.get("replicas", 1)
        rolling = spec.get("strategy", {}).get("type", "RollingUpdate") != "Recreate"
        ru = spec.get("strategy", {}).get("rollingUpdate") or {}
        surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), replicas, True) if rolling else 0
        unavailable = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False) if rolling else replicas
        if rolling and surge == 0 and unavailable == 0:
            unavailable = 1
        paused = bool(spec.get("paused"))
        progressing = _find(conditions, "Progressing")
        if paused and (progressing is None or progressing.get("reason") != "DeploymentPaused"):
            _set_condition(conditions, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused",
                           self._reset_progress(key))
        elif not paused and progressing is not None and progressing.get("reason") == "DeploymentPaused":
            _set_condition(conditions, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed",
                           self._reset_progress(key))
        created = False
        if new_rs is None and not paused:
            new_rs = self._create_rs(d, max(revisions, default=0) + 1, replicas, surge, all_rs)
            created = True
            _set_condition(conditions, "Progressing", "True", "NewReplicaSetCreated",
                           f'Created new replica set "{new_rs["metadata"]["name"]}"', self._reset_progress(key))
        elif new_rs is not None:
            rev = int(new_rs["metadata"].get("annotations", {}).get(REVISION, "0") or 0)
            if rev <= max_old or self._needs_annotations(new_rs, d, replicas, surge):
                new_rs = self._annotate_rs(new_rs, d, max(rev, max_old + 1) if rev <= max_old else rev,
                                           replicas, surge)
            if _find(conditions, "Progressing") is None:
                _set_condition(conditions, "Progressing", "True", "FoundNewReplicaSet",
                               f'Found new replica set "{new_rs["metadata"]["name"]}"', self._reset_progress(key))
        pods = self._pods_by_rs(ns)
        if not paused and new_rs is not None:
            if rolling:
                self._rolling(d, new_rs, old_rs, pods, replicas, surge, unavailable, created)
            else:
                self._recreate(d, new_rs, old_rs, pods, replicas)
            self._cleanup(d, old_rs)
            # re-read after scaling
            all_rs = owned_by(self.store.unsorted(RS, ns), uid)
            new_rs = next((rs for rs in all_rs if rs["metadata"]["uid"] == new_rs["metadata"]["uid"]), new_rs)
            pods = self._pods_by_rs(ns)
        # status
        total = sum(len(pods.get(rs["metadata"]["uid"], ())) for rs in all_rs)
        updated = len(pods.get(new_rs["metadata"]["uid"], ())) if new_rs else 0
        ready = sum(1 for rs in all_rs for p in pods.get(rs["metadata"]["uid"], ()) if pod_ready(p))
        min_ready = spec.get("minReadySeconds", 0) or 0
        wake: list[float] = []
        available = sum(1 for rs in all_rs for p in pods.get(rs["metadata"]["uid"], ())
                        if self.kubelet.available(p, min_ready, wake))
        if wake:
            self.schedule("deploy", ns, name, min(wake) - self.clock.time() + 0.01)
        spec_total = sum(rs["spec"].get("replicas", 0) for rs in all_rs)
        new_status.update(observedGeneration=generation, replicas=total, updatedReplicas=updated,
                          readyReplicas=ready, availableReplicas=available)
        unavail = max(spec_total - available, 0)
        if unavail:
            new_status["unavailableReplicas"] = unavail
        else:
            new_status.pop("unavailableReplicas", None)
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
            if not new_status[k]:
                new_status.pop(k)
        if available >= replicas - unavailable:
            _set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                           "Deployment has minimum availability.", self.clock.time())
        else:
            _set_condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.", self.clock.time())
        rs_name = new_rs["metadata"]["name"] if new_rs else name
        progressing = _find(conditions, "Progressing")
        complete_before = (total == updated and progressing is not None
                           and progressing.get("reason") == "NewReplicaSetAvailable")
        is_complete = (updated == replicas and total == replicas and available == replicas)
        active = False
        deadline = spec.get("progressDeadlineSeconds")
        if not paused and not complete_before and deadline is not None:
            old_total_before = status.get("replicas", 0) - status.get("updatedReplicas", 0)
            if is_complete:
                _set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                               f'ReplicaSet "{rs_name}" has successfully progressed.', self.clock.time())
            elif (updated > status.get("updatedReplicas", 0) or (total - updated) < old_total_before
                  or ready > status.get("readyReplicas", 0) or available > status.get("availableReplicas", 0)):
                stamp = self._reset_progress(key)
                c = _find(conditions, "Progressing")
                keep = c.get("lastTransitionTime") if c and c.get("status") == "True" else None
                conditions[:] = [x for x in conditions if x.get("type") != "Progressing"]
                _set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                               f'ReplicaSet "{rs_name}" is progressing.', stamp)
                if keep:
                    _find(conditions, "Progressing")["lastTransitionTime"] = keep  # type: ignore[index]
                active = True
            else:
                c = _find(conditions, "Progressing")
                since = self._progress_at.get(key, self.clock.time())
                if c is not None and c.get("reason") == "ProgressDeadlineExceeded":
                    pass
                elif c is not None and self.clock.time() >= since + deadline:
                    _set_condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                                   f'ReplicaSet "{rs_name}" has timed out progressing.', self.clock.time())
                    self.record(d, "ProgressDeadlineExceeded",
                                f'ReplicaSet "{rs_name}" has timed out progressing.', "Warning")
                else:
                    active = True
                    self.schedule("deploy", ns, name, since + deadline - self.clock.time() + 0.01)
        self.on_rollout(f"{ns}/{name}", active)
        new_status["conditions"] = conditions
        annotations = dict(meta.get("annotations") or {})
        if new_rs is not None:
            annotations[REVISION] = new_rs["metadata"]["annotations"][REVISION]
        if new_status != status or annotations != (meta.get("annotations") or {}):
            current = self.store.get(DEPLOY, ns, name)
            if current is None or current["metadata"]["uid"] != uid:
                return
            fresh = dict(current)
            fresh["metadata"] = dict(current["metadata"], annotations=annotations)
            fresh["status"] = new_status
            self.store.put(DEPLOY, fresh)

    def _comparable(self, owner: Obj) -> Any:
        """comparable_template of a Deployment's or ReplicaSet's template, cached: per generation
        for a Deployment (a template change bumps it), per pod-template-hash for a ReplicaSet
        (scaling bumps its generation, but its template stays what it was created with)."""
        meta = owner["metadata"]
        labels = (owner["spec"]["template"].get("metadata") or {}).get("labels") or {}
        version = labels.get(HASH) if owner.get("kind") == "ReplicaSet" and HASH in labels else None
        key = (meta["uid"], version or meta.get("generation", 1))
        found = self._templates.get(key)
        if found is None:
            if len(self._templates) > 2000:
                self._templates.clear()
            found = self._templates[key] = comparable_template(owner["spec"]["template"])
        return found

    def _reset_progress(self, key: tuple[str, str]) -> float:
        self._progress_at[key] = self.clock.time()
        return self._progress_at[key]

    def _rs_annotations(self, d: Obj, revision: int, replicas: int, surge: int) -> dict[str, str]:
        out = {k: v for k, v in (d["metadata"].get("annotations") or {}).items() if k not in _NOT_COPIED}
        out.update({REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + surge)})
        return out

    def _needs_annotations(self, rs: Obj, d: Obj, replicas: int, surge: int) -> bool:
        """Whether the new ReplicaSet lacks the Deployment's current annotations (as the real
        controller copies them, `kubernetes.io/change-cause` shows in rollout history)."""
        ann = rs["metadata"].get("annotations") or {}
        wanted = self._rs_annotations(d, int(ann.get(REVISION, "0") or 0), replicas, surge)
        return any(ann.get(k) != v for k, v in wanted.items())

    def _annotate_rs(self, rs: Obj, d: Obj, revision: int, replicas: int, surge: int) -> Obj:
        fresh = clone(rs)
        old_ann = fresh["metadata"].get("annotations") or {}
        ann = self._rs_annotations(d, revision, replicas, surge)
        old_rev = old_ann.get(REVISION)
        if old_rev and old_rev != str(revision):
            history = [h for h in old_ann.get("deployment.kubernetes.io/revision-history", "").split(",") if h]
            ann["deployment.kubernetes.io/revision-history"] = ",".join(history + [old_rev])
        fresh["metadata"]["annotations"] = ann
        return self.store.put(RS, fresh)

    def _create_rs(self, d: Obj, revision: int, replicas: int, surge: int, all_rs: list[Obj]) -> Obj:
        meta = d["metadata"]
        template = clone(d["spec"]["template"])
        h = template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH] = h
        selector = clone(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH] = h
        existing_total = sum(rs["spec"].get("replicas", 0) for rs in all_rs)
        start = max(min(replicas + surge - existing_total, replicas), 0) if all_rs else replicas
        if d["spec"].get("strategy", {}).get("type") == "Recreate" and all_rs:
            start = 0
        rs = {"kind": "ReplicaSet", "apiVersion": "apps/v1",
              "metadata": {"name": f"{meta['name']}-{h}", "namespace": meta["namespace"],
                           "uid": str(uuid.uuid4()), "generation": 1, "creationTimestamp": now_iso(self.clock.time()),
                           "labels": dict(template["metadata"]["labels"]),
                           "annotations": self._rs_annotations(d, revision, replicas, surge),
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": meta["name"], "uid": meta["uid"],
                                                "controller": True, "blockOwnerDeletion": True}]},
              "spec": {"replicas": start, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                       "selector": selector, "template": template},
              "status": {"replicas": 0, "observedGeneration": 0}}
        stored = self.store.put(RS, rs)
        if start:
            self.record(d, "ScalingReplicaSet", f"Scaled up replica set {rs['metadata']['name']} to {start} from 0")
        return stored

    def _scale(self, d: Obj, rs: Obj, count: int) -> None:
        before = rs["spec"].get("replicas", 0)
        if before == count:
            return
        fresh = clone(rs)
        fresh["spec"]["replicas"] = count
        fresh["metadata"]["generation"] = fresh["metadata"].get("generation", 1) + 1
        self.store.put(RS, fresh)
        word = "up" if count > before else "down"
        self.record(d, "ScalingReplicaSet",
                    f"Scaled {word} replica set {rs['metadata']['name']} to {count} from {before}")

    def _rolling(self, d: Obj, new_rs: Obj, old_rs: list[Obj], pods: dict[str, list[Obj]],
                 replicas: int, surge: int, unavailable: int, created: bool) -> None:
        min_ready = d["spec"].get("minReadySeconds", 0) or 0
        wake: list[float] = []  # the status pass of this sync schedules the re-sync

        def avail(rs: Obj) -> int:
            return sum(1 for p in pods.get(rs["metadata"]["uid"], ()) if self.kubelet.available(p, min_ready, wake))
        # scale up the new ReplicaSet within maxSurge
        all_total = sum(rs["spec"].get("replicas", 0) for rs in old_rs) + new_rs["spec"].get("replicas", 0)
        new_count = new_rs["spec"].get("replicas", 0)
        if new_count < replicas and not created:
            room = replicas + surge - all_total
            if room > 0:
                target = min(new_count + room, replicas)
                self._scale(d, new_rs, target)
                new_count = target
        elif new_count > replicas:
            self._scale(d, new_rs, replicas)
            new_count = replicas
        # scale down old ReplicaSets within maxUnavailable
        live_old = sorted((rs for rs in old_rs if rs["spec"].get("replicas", 0) > 0),
                          key=lambda rs: rs["metadata"].get("creationTimestamp", ""))
        if not live_old:
            return
        all_total = sum(rs["spec"].get("replicas", 0) for rs in live_old) + new_count
        min_available = replicas - unavailable
        new_unavailable = new_count - avail(new_rs)
        budget = all_total - min_available - new_unavailable
        counts = {rs["metadata"]["uid"]: rs["spec"].get("replicas", 0) for rs in live_old}
        # first the old pods that are not available anyway
        for rs in live_old:
            if budget <= 0:
                break
            unhealthy = counts[rs["metadata"]["uid"]] - avail(rs)
            cut = min(max(unhealthy, 0), budget)
            counts[rs["metadata"]["uid"]] -= cut
            budget -= cut
        available_total = sum(min(avail(rs), counts[rs["metadata"]["uid"]]) for rs in live_old) + avail(new_rs)
        budget = available_total - min_available
        for rs in live_old:
            if budget <= 0:
                break
            cut = min(counts[rs["metadata"]["uid"]], budget)
            counts[rs["metadata"]["uid"]] -= cut
            budget -= cut
        for rs in live_old:
            self._scale(d, rs, counts[rs["metadata"]["uid"]])

    def _recreate(self, d: Obj, new_rs: Obj, old_rs: list[Obj], pods: dict[str, list[Obj]],
                  replicas: int) -> None:
        for rs in old_rs:
            self._scale(d, rs, 0)
        if any(pods.get(rs["metadata"]["uid"]) for rs in old_rs):
            return
        self._scale(d, new_rs, replicas)

    def _cleanup(self, d: Obj, old_rs: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [rs for rs in old_rs if rs["spec"].get("replicas", 0) == 0
                and not (rs.get("status") or {}).get("replicas")]
        idle.sort(key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, "0") or 0))
        for rs in idle[:max(len(idle) - limit, 0)]:
            self.store.delete(RS, rs["metadata"]["namespace"], rs["metadata"]["name"])


def _find(conditions: list[dict[str, Any]], ctype: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def _set_condition(conditions: list[dict[str, Any]], ctype: str, status: str, reason: str,
                   message: str, at: float) -> None:
    """SetDeploymentCondition: no change for the same status and reason; keep the transition
    time when only the reason changes."""
    current = _find(conditions, ctype)
    stamp = now_iso(at)
    if current is not None and current.get("status") == status and current.get("reason") == reason:
        return
    cond = {"type": ctype, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}
    if current is not None:
        if current.get("status") == status:
            cond["lastTransitionTime"] = current.get("lastTransitionTime", stamp)
        conditions.remove(current)
    conditions.append(cond)
