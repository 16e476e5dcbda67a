"""Pre-flight checks of an app shipped as a Helm chart.

Listed in `console.preflight`'s checks; they pass with a note when the app ships
manifests. The release check "chart" finds the helm binary (its version in the detail;
a missing one fails with how to get it, so nothing is touched) and runs `helm lint` on a
chart directory with the fleet's default values and the release's tag. The per-cluster
render (`helm template`) goes through the same "values" and "capacity" checks as
manifests (`console.preflight`), and its "dry-run" is `check_helm_dry_run`: the
rendered kinds are ones the console deploys, the API server accepts the rendered objects
exactly as for manifests (`console.preflight.manifests.check_dry_run`, also on a first
release), then, where the namespace exists, `helm upgrade --install --dry-run=server`
(which never sends the objects to the API server, but refuses e.g. a release that
another helm operation left pending).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from console.errors import UserError
from console.kube.client import ClusterError
from console.preflight.model import CheckResult, ClusterContext


def check_chart(config: Any, tag: str, plan: Any) -> CheckResult:
    """helm is there (its version), and `helm lint` passes on a chart directory, or an
    oci:// chart is pulled (`helm show chart`, with the registry login if any)."""
    if config.app.chart is None:
        return CheckResult("chart", True, "the app ships manifests (no chart)")
    from console.kube.helm import chart_args, set_strings, settings_for
    from console.kube.helm_cli import HelmRunner, helm_version
    from console.kube.helm_login import wants_login
    from console.binaries import require
    try:
        settings = settings_for(config)
        version = helm_version(require("helm"))
    except UserError as exc:
        return CheckResult("chart", False, str(exc))
    except (OSError, subprocess.SubprocessError) as exc:
        return CheckResult("chart", False, f"helm does not run: {type(exc).__name__}: {exc}")
    runner = HelmRunner(settings.binary, "(release)", "default", {}, settings.storage,
                        settings.timeout)
    if settings.chart.startswith("oci://"):
        # Pulled once here (with the registry login, if any): a chart or a login the
        # registry refuses stops the release before any cluster is touched.
        try:
            runner.run(["show", "chart", settings.chart, *chart_args(settings, ())[2:]],
                       cluster_access=False, login=settings.login)
        except (ClusterError, UserError) as exc:
            reason = exc.reason if isinstance(exc, ClusterError) else str(exc)
            if settings.login is None and wants_login(reason):
                reason += (" - the registry wants a login: name it in app.chart_registry "
                           "(username_env and password_env, or vault)")
            return CheckResult("chart", False, f"chart {settings.chart} "
                               f"{settings.chart_version}: "
                               f"{reason.removeprefix('helm show failed: ')}")
        return CheckResult("chart", True, f"helm {version}; {settings.chart} "
                           f"{settings.chart_version} is pulled and rendered per cluster "
                           "(no lint of a remote chart)")
    sets = set_strings(settings, _lint_tag(tag), "lint", config.app.image)
    args = ["lint", settings.chart, *chart_args(settings, sets)[2:]]
    try:
        runner.run(args, values=dict(config.defaults or {}), cluster_access=False)
    except ClusterError as exc:
        return CheckResult("chart", False, f"chart {settings.chart}: "
                           f"{exc.reason.removeprefix('helm lint failed: ')}")
    return CheckResult("chart", True, f"helm {version}; helm lint passed on {settings.chart}")


def _lint_tag(tag: str) -> str:
    from console.names import validate_tag
    try:
        validate_tag(tag)
    except UserError:
        return "lint"  # the "tag" check reports a bad tag; lint still looks at the chart
    return tag


def check_helm_dry_run(ctx: ClusterContext, objects: Sequence[dict] | None) -> CheckResult:
    """The chart's kinds are ones the console deploys, the API server accepts the rendered
    objects (the manifests' server-side dry run, also on a first release), and where the
    namespace exists Helm accepts the upgrade (`helm upgrade --dry-run=server`).

    Helm's server dry run never sends the rendered objects to the API server (templates
    may only look things up), so on its own it passes a Deployment the server refuses;
    it is kept for what only Helm knows - e.g. a release left pending by a killed helm.
    """
    from console.kube.helm import HelmDriver, render_chart
    from console.preflight.manifests import check_dry_run, undeployable_kind

    cid = ctx.cluster.id
    try:
        objects = objects if objects is not None else render_chart(ctx.config, ctx.cluster,
                                                                   ctx.tag)
    except UserError as exc:
        return CheckResult("dry-run", False, f"render failed: {exc}", cid)
    strange = undeployable_kind(objects)
    if strange:
        return CheckResult("dry-run", False, f"the chart renders kind {strange[1]!r} "
                           f"({strange[0]}), not one the console deploys", cid)
    driver = ctx.driver
    if not isinstance(driver, HelmDriver):
        return CheckResult("dry-run", False, "internal error: no Helm driver", cid)
    server = check_dry_run(driver.client, ctx.config, ctx.cluster, ctx.tag, objects,
                           ctx.namespace_exists)
    if not server.ok or ctx.namespace_exists is False:
        return server
    try:
        if not driver.namespace_exists():
            return server
        stuck = driver.pending_problem()
        if stuck is not None:
            return CheckResult("dry-run", False, stuck, cid)
        driver.dry_run(ctx.tag)
    except ClusterError as exc:
        return CheckResult("dry-run", False, f"the API server accepted the rendered chart, "
                           f"but Helm refused the upgrade: {exc.reason}", cid)
    return CheckResult("dry-run", True, f"{server.detail}; helm upgrade --dry-run=server "
                       "passed", cid)
