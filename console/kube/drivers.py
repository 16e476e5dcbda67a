"""Which driver ships the app: manifests (server-side apply) or a Helm chart.

`make_driver` is the engine's one choice point: the fleet file's `app.chart` picks the
Helm driver (`console.kube.helm`), else the manifest driver renders `app.manifests`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console.config import Cluster, FleetConfig
from console.kube.client import KubeClient
from console.kube.driver import ClusterDriver


def make_driver(config: FleetConfig, cluster: Cluster, client: KubeClient,
                kubeconfig: Mapping[str, Any], *, grace: float,
                unreachable_grace: float) -> ClusterDriver:
    """The driver of `cluster` for the fleet's app; `UserError` when helm is missing."""
    chart = config.app.chart
    if chart is None:
        def render(tag: str, digest: str | None = None) -> list[dict[str, Any]]:
            from console.render import render as render_manifests
            return list(render_manifests(config, cluster, tag, digest))

        return ClusterDriver(client, config.app.name, cluster.namespace, grace=grace,
                             unreachable_grace=unreachable_grace, renderer=render)
    from console.kube.helm import HelmDriver, settings_for
    return HelmDriver(client, config.app.name, cluster.namespace, settings_for(config),
                      kubeconfig, values=cluster.values, repository=config.app.image,
                      grace=grace, unreachable_grace=unreachable_grace)
