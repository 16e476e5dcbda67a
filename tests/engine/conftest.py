"""Shared helpers of the engine tests: a fleet file on a started local fleet, an engine on
it, and small readers of what the simulated clusters really run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from console.config import load
from console.engine import Engine, GateAnswer, ReleaseControl
from console.events import Event, Kind
from tests.fleets import (APP, REPO, Recorder, approve, on_sim,  # noqa: F401 - shared
                          write_fleet_file)


def fleet_file(directory: Path, ids: Sequence[str], *, groups: dict[str, list[str]] | None = None,
               strategies: dict[str, Any] | None = None, replicas: int = 2,
               rollout_timeout: str = "60s") -> Path:
    """A clusters.yaml for `ids` (the demo app's manifests), before the sim rewrites it."""
    return write_fleet_file(
        directory, ids, {"manifests": str(REPO / "deploy" / "user-service"),
                         "namespace": "{cluster}", "rollout_timeout": rollout_timeout},
        {"replicas": replicas, "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}},
        groups=groups, strategies=strategies)


@dataclass
class World:
    """A started fleet, its rewritten clusters.yaml and helpers."""

    fleet: Any
    config_path: Path
    config: Any
    recorder: Recorder

    engines: list[Engine] = field(default_factory=list)

    def engine(self, **kwargs: Any) -> Engine:
        """An engine on the fleet with a short fail-fast grace, recording events; the
        `world` fixture closes it."""
        kwargs.setdefault("grace", 0.5)
        engine = Engine(self.config, [self.recorder], **kwargs)
        self.engines.append(engine)
        return engine

    def sim_drivers(self, request_timeout: float = 10.0, grace: float = 0.5
                    ) -> Callable[[str], Any]:
        """A driver factory that builds each cluster's real driver straight from the
        simulator's kubeconfig (no credentials file is read)."""
        from console.kube.client import KubeClient, new_api_client
        from console.kube.drivers import make_driver

        def build(cid: str) -> Any:
            kubeconfig = self.fleet.kubeconfig(cid)
            api = new_api_client(cid, kubeconfig, kubeconfig["current-context"])
            return make_driver(self.config, self.config.cluster(cid),
                               KubeClient(cid, api, request_timeout), kubeconfig,
                               grace=grace, unreachable_grace=30.0)
        return build

    def release(self, request: Any, approver: Callable[[Any], GateAnswer] = approve,
                session: bool = False) -> Any:
        """Run `request` on a new `engine()`; `session`: with the ledger and notifications
        attached (`console.session`), as `deploy` and the console run it."""
        engine = self.engine()
        if not session:
            return engine.run(request, approver)
        from console.session import Session
        with Session(self.config, engine):
            return engine.run(request, approver)

    def fixed_and_retried(self, cluster: str, kind: Kind, by: str
                          ) -> tuple[Engine, ReleaseControl]:
        """`cluster` never pulls v2 until the operator (`by`) fixes it: when it reports
        `kind`, its fault goes and they ask the returned control to retry it. The engine
        to run the release on (the recorder cleared first)."""
        self.fleet.set_faults(cluster, never_pull=["v2"])
        control = ReleaseControl()

        def listener(event: Event) -> None:
            if event.kind is kind and event.cluster == cluster:
                self.fleet.set_faults(cluster, never_pull=[])
                control.retry(cluster, by=by)
        self.recorder.events.clear()
        engine = self.engine()
        engine.add_listener(listener)
        return engine, control

    def kill_while_rolling(self, engine: Engine, cluster: str,
                           revive_after: float | None = None) -> threading.Event:
        """Kill `cluster`'s API server the first time its rollout on `engine` reports
        progress (and revive it `revive_after` s later); the event is set once killed."""
        killed = threading.Event()

        def listener(event: Event) -> None:
            if event.kind is Kind.CLUSTER_PROGRESS and event.cluster == cluster \
                    and not killed.is_set():
                killed.set()
                self.fleet.kill(cluster)
                if revive_after is not None:
                    threading.Timer(revive_after, self.fleet.revive, args=(cluster,)).start()
        engine.add_listener(listener)
        return killed

    def edited(self, change: Callable[[dict[str, Any]], None]) -> World:
        """This world with its fleet file rewritten by `change(doc)` (the same fleet,
        recorder and engines: the fixture still closes them)."""
        doc = yaml.safe_load(self.config_path.read_text())
        change(doc)
        self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return World(self.fleet, self.config_path, load(self.config_path), self.recorder,
                     self.engines)

    def close(self) -> None:
        """Close every engine made by `engine()`."""
        for engine in self.engines:
            engine.close()

    approve = staticmethod(approve)

    def deploy_everywhere(self, tag: str, ids: Sequence[str] = ()) -> None:
        """Bring clusters to `tag` with a parallel release (the starting point of a story)."""
        from console.engine import ReleaseRequest
        engine = Engine(self.config, grace=0.5)
        try:
            result = engine.run(ReleaseRequest(tag=tag, clusters=",".join(ids),
                                               strategy="parallel", max_parallel=20), approve)
        finally:
            engine.close()
        failures = [f"{r.cluster}: {r.check}: {r.detail}" for r in
                    (result.preflight.failures if result.preflight else ())]
        assert result.exit_code == 0, (failures, result.outcome, result.message,
                                       result.clusters)

    def image(self, cid: str) -> str | None:
        """The app image the cluster's Deployment runs (None when absent)."""
        dep = self.fleet.get(cid, "apps/deployments", cid, APP)
        if dep is None:
            return None
        return dep["spec"]["template"]["spec"]["containers"][0]["image"]

    def version(self, cid: str) -> str | None:
        """The tag of that image (a release pins it: `repo:tag@sha256:...`)."""
        from console.kube.driver import image_tag
        return image_tag(self.image(cid))

    def annotations(self, cid: str) -> dict[str, str]:
        """The Deployment's annotations."""
        dep = self.fleet.get(cid, "apps/deployments", cid, APP)
        return dict((dep or {}).get("metadata", {}).get("annotations") or {})

    def ready_pods(self, cid: str, tag: str) -> int:
        """Pods of `tag` that are Ready and not terminating."""
        count = 0
        for pod in self.fleet.list(cid, "/pods", cid):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            if not pod["spec"]["containers"][0]["image"].split("@")[0].endswith(f":{tag}"):
                continue
            if any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in pod.get("status", {}).get("conditions") or ()):
                count += 1
        return count


@pytest.fixture
def world(sim_fleet: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., World]]:
    """Factory: `world(ids, **sim_settings, groups=..., strategies=...)` -> a `World`;
    every engine a world made is closed at teardown (before its fleet stops)."""
    worlds: list[World] = []

    def make(ids: Sequence[Any], *, groups: dict[str, list[str]] | None = None,
             strategies: dict[str, Any] | None = None, replicas: int = 2,
             rollout_timeout: str = "60s", **sim: Any) -> World:
        fleet, path = on_sim(sim_fleet, ids, tmp_path, lambda plain: fleet_file(
            tmp_path, plain, groups=groups, strategies=strategies, replicas=replicas,
            rollout_timeout=rollout_timeout), **sim)
        made = World(fleet, path, load(path), Recorder())
        worlds.append(made)
        return made

    yield make
    for made in worlds:
        made.close()


