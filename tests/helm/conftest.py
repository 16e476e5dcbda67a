"""Fixtures of the Helm tests: the real helm binary, and a simulated fleet whose fleet file
ships the example chart (deploy/charts/user-service) instead of manifests.

helm is found as the console finds it (`console.binaries`: `$RELEASE_CONSOLE_BIN`, the
checkout's `.cache/bin`, then PATH); when it is missing the tests fail and say how to
build it - `make test` builds it first.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from console.config import load
from console.engine import Engine, ReleaseRequest
from tests.fleets import (APP, REPO, Recorder, approve, on_sim,  # noqa: F401 - shared
                          write_fleet_file)

CHART = REPO / "deploy" / "charts" / "user-service"


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary; a missing one fails the test loudly (never a skip)."""
    from console.binaries import find
    found = find("helm")
    if found is None:
        pytest.fail("helm not found (PATH, .cache/bin, $RELEASE_CONSOLE_BIN): run `make bin`, "
                    "or `GOBIN=... go install helm.sh/helm/v3/cmd/helm@v3.22.0`", pytrace=False)
    return found


@dataclass
class HelmWorld:
    """A started fleet, its chart fleet file, and readers of what Helm and the clusters hold."""

    fleet: Any
    config_path: Path
    config: Any
    helm: Path
    recorder: Recorder = field(default_factory=Recorder)

    def engine(self, **kwargs: Any) -> Engine:
        """An engine on the fleet with a short fail-fast grace, recording events."""
        kwargs.setdefault("grace", 0.5)
        return Engine(self.config, [self.recorder], **kwargs)

    def release(self, tag: str, clusters: str = "", strategy: str = "parallel", **kw: Any) -> Any:
        """One release through the engine; the `ReleaseResult`."""
        engine = self.engine()
        try:
            return engine.run(ReleaseRequest(tag=tag, clusters=clusters, strategy=strategy, **kw),
                              approve)
        finally:
            engine.close()

    def kubeconfig(self, cid: str) -> Path:
        return self.config_path.parent / f"{cid}.yaml"

    def history(self, cid: str) -> list[dict[str, Any]]:
        """`helm history -o json` of the release in `cid`, run as an operator would."""
        storage = self.config.app.chart.storage
        out = subprocess.run([str(self.helm), "history", self.config.app.chart.release, "-n", cid,
                              "--kubeconfig", str(self.kubeconfig(cid)), "-o", "json"],
                             capture_output=True, text=True, timeout=120, check=True,
                             env={"HELM_DRIVER": storage, "HOME": str(self.config_path.parent),
                                  "PATH": "/usr/bin:/bin"})
        return yaml.safe_load(out.stdout)

    def values(self, cid: str, revision: int) -> dict[str, Any]:
        """`helm get values --revision N -o json` (the user-supplied values of a revision)."""
        out = subprocess.run([str(self.helm), "get", "values", self.config.app.chart.release,
                              "--revision", str(revision), "-n", cid, "--kubeconfig",
                              str(self.kubeconfig(cid)), "-o", "json"],
                             capture_output=True, text=True, timeout=120, check=True,
                             env={"HELM_DRIVER": self.config.app.chart.storage,
                                  "HOME": str(self.config_path.parent), "PATH": "/usr/bin:/bin"})
        return yaml.safe_load(out.stdout) or {}

    def image(self, cid: str) -> str | None:
        dep = self.fleet.get(cid, "apps/deployments", cid, APP)
        return dep["spec"]["template"]["spec"]["containers"][0]["image"] if dep else None

    def version(self, cid: str) -> str | None:
        from console.kube.driver import image_tag
        return image_tag(self.image(cid))


def chart_fleet_file(directory: Path, ids: Sequence[str], *, storage: str | None = None,
                     strategies: dict[str, Any] | None = None,
                     groups: dict[str, list[str]] | None = None,
                     rollout_timeout: str = "60s") -> Path:
    """A clusters.yaml shipping the example chart to `ids` (before the sim rewrites it)."""
    app: dict[str, Any] = {"chart": str(CHART), "namespace": "{cluster}",
                           "rollout_timeout": rollout_timeout}
    if storage:
        app["helm_storage"] = storage
    return write_fleet_file(directory, ids, app, {"replicas": 2, "resources": {
        "requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}},
        groups=groups, strategies=strategies)


@pytest.fixture
def helm_world(sim_fleet: Callable[..., Any], tmp_path: Path,
               helm: Path) -> Callable[..., HelmWorld]:
    """Factory: `helm_world(ids, storage=..., strategies=..., **sim_settings)`."""

    def make(ids: Sequence[Any], *, storage: str | None = None,
             strategies: dict[str, Any] | None = None,
             groups: dict[str, list[str]] | None = None, rollout_timeout: str = "60s",
             **sim: Any) -> HelmWorld:
        fleet, path = on_sim(sim_fleet, ids, tmp_path, lambda plain: chart_fleet_file(
            tmp_path, plain, storage=storage, strategies=strategies, groups=groups,
            rollout_timeout=rollout_timeout), **sim)
        return HelmWorld(fleet, path, load(path), helm)

    return make


@pytest.fixture(params=["sim", pytest.param("lab", marks=pytest.mark.real)])
def chart_stage(request: pytest.FixtureRequest, tmp_path: Path, helm: Path) -> Iterator[Any]:
    """The same story's set-up on the simulator and on the lab (c0..c2, own namespaces);
    a `tests.helm.stage.ChartStage`."""
    from console.sim import SimFleet

    from .stage import IDS, SETTINGS, ChartStage, next_namespace
    namespace = next_namespace()
    if request.param == "lab":
        yield ChartStage("lab", request.getfixturevalue("lab"), tmp_path, namespace, helm)
        return
    sim = SimFleet(list(IDS), **SETTINGS).start()
    try:
        yield ChartStage("sim", sim, tmp_path, namespace, helm)
    finally:
        sim.stop()
