"""The state of one simulated cluster: store, controller, tokens, counters, settings, liveness."""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from console.sim.clock import SimClock
from console.sim.controller import Controller
from console.sim.objects import now_iso
from console.sim.faults import ClusterSettings
from console.sim.rbac import Principal, principal
from console.sim.store import Store

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class SimCluster:
    """One cluster; every method but the constructor runs on the fleet's loop thread."""

    def __init__(self, cluster_id: str, settings: ClusterSettings, loop: asyncio.AbstractEventLoop,
                 on_rollout: Callable[[str, str, bool], None], seed: int | None = None,
                 clock: SimClock | None = None) -> None:
        self.id = cluster_id
        self.settings = settings
        self.loop = loop
        self.clock = SimClock.given(clock, loop)
        self.seed = seed
        # The cluster's own randomness (pod start jitter, names, IPs); the injected faults
        # are decided apart from it (`fault_rng`), so that they replay whatever the timing.
        self.rng = random.Random(None if seed is None else f"{seed}/{cluster_id}")
        self._fault_draws: Counter[str] = Counter()
        self.store = Store()
        self.controller = Controller(cluster_id, self.store, settings, loop, self.rng,
                                     lambda key, active: on_rollout(cluster_id, key, active),
                                     clock)
        self.admin_token = "sim-" + secrets.token_urlsafe(24)
        self.tokens: dict[str, Principal] = {
            self.admin_token: principal(f"system:serviceaccount:kube-system:{cluster_id}-admin", None)}
        self.counters: Counter[str] = Counter()
        # (resource key, namespace, name, field manager) -> what that manager last applied
        self.applied: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.port = 0
        self.alive = True
        self._create_system_objects()

    def fault_rng(self, method: str, path: str) -> random.Random:
        """The dice for one request's injected latency and error: with a seeded fleet, the
        n-th `METHOD path` of this cluster always gets the same fate, however the requests
        to other paths interleave with it (threads, retries, timing)."""
        if self.seed is None:
            return self.rng
        key = f"{method} {path}"
        self._fault_draws[key] += 1
        digest = hashlib.blake2b(f"{self.seed}|{self.id}|{key}|{self._fault_draws[key]}"
                                 .encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "big"))

    def _create_system_objects(self) -> None:
        stamp = now_iso(self.clock.time())
        for ns in SYSTEM_NAMESPACES:
            self.store.put("/namespaces", {
                "kind": "Namespace", "apiVersion": "v1",
                "metadata": {"name": ns, "uid": str(uuid.uuid4()), "creationTimestamp": stamp,
                             "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        self.sync_nodes()

    def sync_nodes(self) -> None:
        """Create or remove nodes to match `settings.nodes` (and their allocatable)."""
        s = self.settings
        stamp = now_iso(self.clock.time())
        wanted = {f"{self.id}-node-{n}" for n in range(s.nodes)}
        for node in self.store.list("/nodes"):
            if node["metadata"]["name"] not in wanted:
                self.store.delete("/nodes", "", node["metadata"]["name"])
        for n, name in enumerate(sorted(wanted)):
            resources = {"cpu": s.node_cpu, "memory": s.node_memory, "pods": "110"}
            current = self.store.get("/nodes", "", name)
            if current is not None and current["status"]["allocatable"] == resources:
                continue
            self.store.put("/nodes", {
                "kind": "Node", "apiVersion": "v1",
                "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": stamp,
                             "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                        "node-role.kubernetes.io/worker": ""}},
                "spec": {"podCIDR": f"10.244.{n}.0/24"},
                "status": {"capacity": dict(resources), "allocatable": dict(resources),
                           "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                           "message": "kubelet is posting ready status",
                                           "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
                           "addresses": [{"type": "InternalIP", "address": f"10.0.0.{n + 1}"},
                                         {"type": "Hostname", "address": name}],
                           "nodeInfo": {"kubeletVersion": "v1.32.4-sim", "kubeProxyVersion": "v1.32.4-sim",
                                        "osImage": "release-console sim", "kernelVersion": "6.1.0-sim",
                                        "architecture": "amd64", "operatingSystem": "linux",
                                        "containerRuntimeVersion": "containerd://1.7.0-sim",
                                        "machineID": name, "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                                        "bootID": str(uuid.uuid5(uuid.NAMESPACE_URL, name))}}})

    def add_token(self, rules: Sequence[Mapping[str, Any]] | None, username: str | None = None) -> str:
        """A new bearer token with `rules` (None = full rights)."""
        token = "sim-" + secrets.token_urlsafe(24)
        name = username or f"system:serviceaccount:default:limited-{len(self.tokens)}"
        self.tokens[token] = principal(name, rules)
        return token

    def count(self, verb: str, resource: str, dry_run: bool = False) -> None:
        """Count one request (a `dryRun=All` one also under `dry_run`: it stores nothing)."""
        self.counters["total"] += 1
        self.counters[f"verb:{verb}"] += 1
        self.counters[f"resource:{resource}"] += 1
        self.counters[f"{verb} {resource}"] += 1
        if dry_run:
            self.counters[f"dry-run:{verb} {resource}"] += 1

    def counter_summary(self) -> dict[str, Any]:
        """Requests in total, by verb, by resource and by `verb resource`; injected errors,
        and requests dropped unanswered (`drop_reused`)."""
        by_verb = {k[5:]: v for k, v in self.counters.items() if k.startswith("verb:")}
        by_resource = {k[9:]: v for k, v in self.counters.items() if k.startswith("resource:")}
        pairs = {k: v for k, v in self.counters.items() if " " in k and ":" not in k}
        dry = {k[8:]: v for k, v in self.counters.items() if k.startswith("dry-run:")}
        return {"total": self.counters["total"], "by_verb": by_verb, "by_resource": by_resource,
                "by_verb_resource": pairs, "dry_run": dry,
                "injected_errors": self.counters["injected_errors"],
                "random_faults": self.counters["random_faults"],
                "dropped_requests": self.counters["dropped_requests"]}
