"""The Helm driver: the app shipped as a Helm chart, through the helm binary, per cluster.

`HelmDriver` is a `ClusterDriver` whose writes are Helm's: a release is `helm upgrade
--install RELEASE CHART` (never `--wait`: the console follows the rollout itself, pinned
to the generation Helm's write produced, with the same fail-fast rules and timeouts as
for manifests), a rollback is `helm rollback RELEASE REVISION` to the revision that ran
the wanted version, and a first install that failed is `helm uninstall`ed. Reads
(the live Deployment, Helm's release history) go through the cluster's own client; the
history comes from Helm's storage objects (`console.kube.helm_storage`).

After each Helm write the console sets its own annotations on the Deployment (version,
release id, previous version) with a merge patch: Helm's three-way merge leaves keys it
never rendered alone, so they survive later upgrades and rollbacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from console.config import Cluster, FleetConfig
from console.config.chart_section import chart_host
from console.errors import ConfigError
from console.kube.client import ClusterError, KubeClient
from console.kube.driver import (FIELD_MANAGER, ClusterDriver, LiveDeployment, Revision,
                                 _container_image, image_tag)
from console.kube.helm_cli import DEFAULT_TIMEOUT, HelmRunner
from console.kube.helm_login import ChartLogin
from console.kube.helm_storage import HelmRevision, latest, pending, read_history

MERGE_PATCH = "application/merge-patch+json"
# Revisions Helm never finished writing, or that failed: never a rollback target.
_NOT_TARGETS = ("failed", "pending-install", "pending-upgrade", "pending-rollback",
                "uninstalling", "uninstalled")


@dataclass(frozen=True)
class HelmSettings:
    """How the fleet file ships the app with Helm (the same for every cluster)."""

    binary: Path | None                 # None: not found (reads work; a helm call says so)
    chart: str                          # an absolute chart directory or an oci:// reference
    release: str
    chart_version: str | None = None    # for oci:// charts
    tag_key: str = "image.tag"
    cluster_key: str = "cluster"
    repository_key: str | None = "image.repository"
    digest_key: str = "image.digest"
    storage: str = "secret"             # Helm's HELM_DRIVER: secret | configmap
    timeout: float = DEFAULT_TIMEOUT    # s per helm call
    ca_file: Path | None = None         # TLS trust for an oci:// chart registry
    plain_http: bool = False            # the oci:// registry speaks plain HTTP (insecure)
    login: ChartLogin | None = None     # the oci:// registry's login (app.chart_registry)


def settings_for(config: FleetConfig) -> HelmSettings:
    """The fleet file's chart settings, with the helm binary if there is one (reading
    Helm's history needs none: `status` works without helm)."""
    from console.binaries import find
    chart = config.app.chart
    if chart is None:
        raise ConfigError(f"{config.source or config.path}: app.chart: not set")
    reg = chart.registry
    login = None
    if reg is not None and reg.login:
        login = ChartLogin(chart_host(chart.chart), reg, config.vault,
                           str(config.source or config.path))
    return HelmSettings(
        binary=find("helm"), chart=chart.chart, release=chart.release,
        chart_version=chart.version, tag_key=chart.tag_key, cluster_key=chart.cluster_key,
        repository_key=chart.repository_key, digest_key=chart.digest_key,
        storage=chart.storage, timeout=chart.timeout,
        ca_file=(reg.ca_file if reg and reg.ca_file else config.app.registry.ca_file),
        plain_http=reg.plain_http if reg is not None else _plain_http(config), login=login)


def require_helm(config: FleetConfig) -> Path | None:
    """The helm binary when the app ships a chart (None when it ships manifests).

    A missing helm is a `UserError` (exit 2) that says how to get it. Every action that
    will run helm asks this first - before it takes a release lock or starts a ledger
    record - so a missing helm leaves the clusters and the ledger untouched.
    """
    if config.app.chart is None:
        return None
    from console.binaries import require
    return require("helm")


def _plain_http(config: FleetConfig) -> bool:
    """Without `app.chart_registry`: whether `app.registry.insecure` covers the oci://
    chart's registry host (`true` for a loopback host, or exactly the host it names)."""
    chart = config.app.chart
    if chart is None or not chart.is_oci:
        return False
    host = chart_host(chart.chart)
    registry = config.app.registry
    if registry.insecure_host:
        return host == registry.insecure_host
    from console.config.checks import is_loopback_host
    return registry.insecure and is_loopback_host(host)


def set_strings(settings: HelmSettings, tag: str, cluster: str, repository: str,
                digest: str | None = None) -> tuple[tuple[str, str], ...]:
    """The `--set-string` pairs of a release: the tag, the cluster id, the repository and,
    for a pinned release, the digest (`image.tag` stays the tag: it names the version)."""
    sets = [(settings.tag_key, tag), (settings.cluster_key, cluster)]
    if settings.repository_key:
        sets.append((settings.repository_key, repository))
    if digest:
        sets.append((settings.digest_key, digest))
    return tuple(sets)


def chart_args(settings: HelmSettings, sets: Sequence[tuple[str, str]]) -> list[str]:
    """RELEASE CHART and the flags every chart command shares (version, TLS, set-strings)."""
    args = [settings.release, settings.chart]
    if settings.chart_version:
        args += ["--version", settings.chart_version]
    if settings.chart.startswith("oci://"):
        if settings.plain_http:
            args += ["--plain-http"]
        elif settings.ca_file:
            args += ["--ca-file", str(settings.ca_file)]
    for key, value in sets:
        # --set-string: a tag such as 1.10 or 20261201 must stay a string.
        args += ["--set-string", f"{key}={value}"]
    return args


def render_chart(config: FleetConfig, cluster: Cluster, tag: str) -> list[dict[str, Any]]:
    """`helm template` of the chart for one cluster and tag, as objects (no cluster call).

    Raises `ConfigError` naming the chart when helm cannot render it or an object names
    another namespace than the cluster's.
    """
    from console.render import CLUSTER_SCOPED_KINDS

    settings = settings_for(config)
    runner = HelmRunner(settings.binary, cluster.id, cluster.namespace, {}, settings.storage,
                        settings.timeout)
    sets = set_strings(settings, tag, cluster.id, config.app.image)
    try:
        out = runner.run(["template", *chart_args(settings, sets), "--namespace",
                          cluster.namespace], values=cluster.values, cluster_access=False,
                         login=settings.login)
    except ClusterError as exc:
        raise ConfigError(f"chart {settings.chart}: cluster {cluster.id!r}: "
                          f"{exc.reason}") from None
    objects = []
    for doc in yaml.safe_load_all(out.stdout):
        if not doc:
            continue
        if not isinstance(doc, dict) or not doc.get("kind") or \
                not (doc.get("metadata") or {}).get("name"):
            raise ConfigError(f"chart {settings.chart}: rendered a document that is not a "
                              "Kubernetes object with a kind and a name")
        meta = doc["metadata"]
        if doc["kind"] not in CLUSTER_SCOPED_KINDS:
            if meta.get("namespace") not in (None, "", cluster.namespace):
                raise ConfigError(
                    f"chart {settings.chart}: {doc['kind']} {meta['name']!r} names namespace "
                    f"{meta['namespace']!r}, not cluster {cluster.id!r}'s namespace "
                    f"{cluster.namespace!r} (use .Release.Namespace)")
            meta["namespace"] = cluster.namespace
        objects.append(doc)
    return objects


@dataclass(frozen=True)
class HelmInstall:
    """A prepared `helm upgrade --install`: the tag, values and the set-strings."""

    tag: str
    values: Mapping[str, Any]
    sets: tuple[tuple[str, str], ...]


class HelmDriver(ClusterDriver):
    """One app, shipped as a Helm release, in one namespace of one cluster."""

    installs_on_version = False     # helm upgrade takes no resourceVersion precondition

    def __init__(self, client: KubeClient, app: str, namespace: str, settings: HelmSettings,
                 kubeconfig: Mapping[str, Any], *, values: Mapping[str, Any],
                 repository: str, grace: float = 10.0, unreachable_grace: float = 30.0) -> None:
        super().__init__(client, app, namespace, grace=grace, unreachable_grace=unreachable_grace)
        self.settings = settings
        self.values = dict(values)
        self.repository = repository
        self.helm = HelmRunner(settings.binary, client.cluster, namespace, kubeconfig,
                               settings.storage, settings.timeout)

    # ------------------------------------------------------------------ reads

    def history(self, timeout: float | None = None) -> list[HelmRevision]:
        """Helm's revisions of the release here, oldest first."""
        return read_history(self.client, self.settings.storage, self.namespace,
                            self.settings.release, self.app, timeout)

    def live(self, timeout: float | None = None) -> LiveDeployment:
        """The live Deployment plus the Helm release's current revision; its status is the
        pending one when a helm operation did not finish (the revision stays the last
        deployed, which is what runs)."""
        base = super().live(timeout)
        history = self.history(timeout)
        current, stuck = latest(history), pending(history)
        if current is None:
            return base
        return replace(base, helm_revision=current.number, chart_version=current.chart_version,
                       app_version=current.app_version,
                       helm_status=(stuck or current).status)

    def pending_problem(self) -> str | None:
        """What is wrong when Helm left the release pending, and how to recover; None when
        it is not pending."""
        history = self.history()
        stuck = pending(history)
        if stuck is None:
            return None
        release, ns = self.settings.release, self.namespace
        what = (f"Helm release {release!r} in namespace {ns!r} is {stuck.status} (revision "
                f"{stuck.number}): a helm operation did not finish (killed or timed out), "
                "and Helm refuses every other until it is resolved")
        good = [r for r in history if r.number < stuck.number and r.status in
                ("deployed", "superseded") and r.template]
        if good:
            version = image_tag(_container_image(good[-1].template, self.app))
            return (f"{what}; recover with `release-console rollback {self.cluster} --to "
                    f"{version}` (helm rollback to revision {good[-1].number})")
        # Helm stores releases where HELM_DRIVER says: the operator's helm must look there.
        driver = "" if self.settings.storage == "secret" else \
            f"HELM_DRIVER={self.settings.storage} "
        return (f"{what}; nothing was ever deployed: recover with `{driver}helm uninstall "
                f"{release} -n {ns}` (with cluster {self.cluster}'s kubeconfig), then release "
                "again")

    def revisions(self, live: LiveDeployment | None = None) -> list[Revision]:
        """Helm's revisions that ran a Deployment of the app (numbers are Helm's)."""
        out = []
        for rev in self.history():
            template = rev.template
            if rev.status in _NOT_TARGETS or not template:
                continue
            image = _container_image(template, self.app)
            out.append(Revision(rev.number, image_tag(image), image, 0, rev.updated,
                                dict(template)))
        return out

    # ------------------------------------------------------------------ writes

    def prepare(self, tag: str, digest: str | None = None) -> HelmInstall:
        """The values and `--set-string`s of a release of `tag`, pinned to `digest` when
        given (touches nothing)."""
        return HelmInstall(tag, self.values,
                           set_strings(self.settings, tag, self.cluster, self.repository,
                                       digest))

    def install(self, prepared: Any, annotations: Mapping[str, str]) -> dict[str, Any]:
        """`helm upgrade --install` the prepared release; the Deployment as annotated."""
        if not isinstance(prepared, HelmInstall):
            raise TypeError("HelmDriver.install takes what HelmDriver.prepare returned")
        args = ["upgrade", "--install", *chart_args(self.settings, prepared.sets)]
        release_id = annotations.get("release-console.io/release-id", "")
        args += ["--description", f"release-console {release_id}: {prepared.tag}".strip()]
        self.helm.run(args, values=prepared.values, login=self.settings.login)
        return self._annotate(annotations)

    def dry_run(self, tag: str) -> str:
        """`helm upgrade --install --dry-run=server` of `tag`; helm's last line of output."""
        prepared = self.prepare(tag)
        out = self.helm.run(["upgrade", "--install", *chart_args(self.settings, prepared.sets),
                             "--dry-run=server"], values=prepared.values,
                            login=self.settings.login)
        return out.stdout

    def undo_to(self, revision: Revision, live: LiveDeployment,
                annotations: Mapping[str, str]) -> dict[str, Any]:
        """`helm rollback RELEASE N` to the revision that ran the wanted version."""
        self.helm.run(["rollback", self.settings.release, str(revision.number)])
        return self._annotate(annotations)

    def roll_back_to(self, before: LiveDeployment,
                     annotations: Mapping[str, str]) -> dict[str, Any] | None:
        """Back to what ran before a release: Helm's revision then, or nothing at all."""
        if before.helm_revision is None:
            if before.exists:
                # Deployed without Helm before (by manifests): put that template back.
                return super().roll_back_to(before, annotations)
            self.uninstall()
            return None
        self.helm.run(["rollback", self.settings.release, str(before.helm_revision)])
        return self._annotate(annotations)

    def uninstall(self) -> None:
        """`helm uninstall` the release (a first install that failed leaves nothing).

        A release that is not there is uninstalled already (helm's `--ignore-not-found`,
        not a test of its message: any other error, whatever it says, is raised)."""
        self.last_revision = None
        self.helm.run(["uninstall", "--ignore-not-found", self.settings.release])

    def delete_deployment(self) -> None:
        """A Helm release is removed as a whole."""
        self.uninstall()

    def _annotate(self, annotations: Mapping[str, str]) -> dict[str, Any]:
        """Set the console's annotations on the Deployment Helm wrote; return it."""
        current = latest(self.history())
        self.last_revision = current.number if current else None
        body = {"metadata": {"annotations": dict(annotations)}}
        try:
            return self.client.request("PATCH", f"{self._deployments}/{self.app}",
                                       {"fieldManager": FIELD_MANAGER}, body=body,
                                       content_type=MERGE_PATCH)
        except ClusterError as exc:
            if exc.status == 404:
                raise ClusterError(self.cluster, f"the chart made no Deployment named "
                                   f"{self.app!r} in namespace {self.namespace}") from None
            raise
