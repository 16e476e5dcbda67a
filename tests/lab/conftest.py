"""The lab and the differential fixture: the same release story on console/sim and on real
Kubernetes (console/lab).

`lab` (in tests/conftest.py, shared with tests/helm) starts one lab per test session
(three clusters c0..c2 with `IDS` and `SETTINGS` below; the first test that needs it pays
~30-60 s) and shares it; every story gets namespaces of its own there ("t<N>-<id>"),
so stories do not see each other's Deployments. `stage` is parametrized over "sim" and
"lab": a story written once runs on both, and where the simulator answers differently from
the real kube-apiserver and controllers the "lab" case shows it. Tests that need the lab
are marked `real`; a machine without the built components fails them with the reason
(`make bin`), it never skips them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.config import load
from console.engine import Engine, GateAnswer, ReleaseRequest
from console.sim import SimFleet
from tests.fleets import APP, REPO, approve, write_fleet_file  # noqa: F401 - shared
from tests.waiting import wait_for  # noqa: F401 - the lab stories import it from here

IDS = ("c0", "c1", "c2")
# The settings both fleets run with (the lab's KWOK stages are written from them).
SETTINGS: dict[str, Any] = {"readiness_delay": 0.5, "jitter": 0.3, "never_pull": ("*broken*",),
                            "crash": ("*crash*",), "registry_missing": ("*missing*",)}
_namespaces = itertools.count(1)


def fleet_file(directory: Path, ids: Sequence[str], namespace: str, *,
               strategies: dict[str, Any] | None = None, replicas: int = 2,
               manifests: Path | None = None, rollout_timeout: str = "90s",
               cpu: str = "10m") -> Path:
    """A clusters.yaml for `ids` (the demo app), before the fleet rewrites it."""
    return write_fleet_file(
        directory, ids, {"manifests": str(manifests or REPO / "deploy" / "user-service"),
                         "namespace": namespace, "rollout_timeout": rollout_timeout},
        {"replicas": replicas, "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}}},
        strategies=strategies)


@dataclass
class Stage:
    """A fleet (sim or lab), a fleet file on it with this story's namespaces, and readers."""

    kind: str
    fleet: Any
    directory: Path
    namespace_template: str
    config_path: Path = field(init=False)

    def write(self, **kwargs: Any) -> Path:
        """(Re)write the fleet file with `fleet_file` options; returns the rewritten path."""
        source = fleet_file(self.directory, IDS, self.namespace_template, **kwargs)
        self.config_path = self.fleet.write_kubeconfigs(self.directory / "fleet", config_path=source)
        return self.config_path

    @property
    def config(self) -> Any:
        """The loaded fleet config."""
        return load(self.config_path)

    def ns(self, cid: str) -> str:
        """The app's namespace on a cluster."""
        return self.namespace_template.format(cluster=cid)

    def engine(self, **kwargs: Any) -> Engine:
        """An engine on this fleet file (short fail-fast grace)."""
        kwargs.setdefault("grace", 0.5)
        return Engine(self.config, **kwargs)

    def release(self, tag: str, clusters: str = "", strategy: str = "parallel",
                approver: Callable[[Any], GateAnswer] = approve, **kw: Any) -> Any:
        """One release through the engine; returns its result."""
        engine = self.engine()
        try:
            return engine.run(ReleaseRequest(tag=tag, clusters=clusters, strategy=strategy, **kw),
                              approver)
        finally:
            engine.close()

    def deployment(self, cid: str) -> dict[str, Any] | None:
        """The app's Deployment on a cluster, or None."""
        return self.fleet.get(cid, "apps/deployments", self.ns(cid), APP)

    def version(self, cid: str) -> str | None:
        """The tag the Deployment's template runs."""
        dep = self.deployment(cid)
        if dep is None:
            return None
        return tag_of(str(dep["spec"]["template"]["spec"]["containers"][0]["image"]))

    def pods(self, cid: str) -> list[dict[str, Any]]:
        """The app's pods on a cluster (not terminating)."""
        return [p for p in self.fleet.list(cid, "/pods", self.ns(cid))
                if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, cid: str, tag: str) -> int:
        """Pods of `tag` that are Ready."""
        return sum(1 for p in self.pods(cid)
                   if tag_of(p["spec"]["containers"][0]["image"]) == tag
                   and any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in (p.get("status") or {}).get("conditions") or ()))


def tag_of(image: str) -> str:
    """The tag of `repo:tag` or `repo:tag@sha256:...` (releases pin the digest)."""
    return image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]


@pytest.fixture(params=["sim", pytest.param("lab", marks=pytest.mark.real)])
def stage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stage]:
    """The same story's set-up on the simulator and on the lab (c0..c2, own namespaces)."""
    namespace = f"t{next(_namespaces)}-{{cluster}}"
    if request.param == "lab":
        fleet = request.getfixturevalue("lab")
        yield Stage("lab", fleet, tmp_path, namespace)
        return
    sim = SimFleet(list(IDS), **SETTINGS).start()
    try:
        yield Stage("sim", sim, tmp_path, namespace)
    finally:
        sim.stop()
