"""The checks of a cluster's rendered manifests: `values` and `dry-run`.

- `check_values`: the manifests render for the cluster and its values hold together
  (shapes that merge, whole replicas, valid resource quantities, requests within limits).
- `check_dry_run`: the API server accepts the manifests without storing anything
  (`dryRun=All`). Where the app's namespace exists, each object is server-side applied
  there, exactly as the release will apply it. On a cluster's first release the namespace
  does not exist yet, and the API server refuses any write into a missing namespace, dry
  run or not (the NamespaceLifecycle admission: `namespaces "x" not found`); so each
  object is instead created, as a dry run, in the `default` namespace with the namespace
  rewritten and a generated name (so an object of the same name there does not turn the
  create into an update of someone else's object). The server decodes, defaults,
  validates and admits it as it would the real one, and its message is shown as it is.
  Nothing is created, the app's namespace included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from console.errors import UserError
from console.kube.client import ClusterError
from console.preflight.model import PING_TIMEOUT, CheckResult, ClusterContext, as_kube

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
FIRST_RELEASE_NAMESPACE = "default"   # where a first release's manifests are dry-run
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_for(config: Any, cluster: Any, tag: str,
               objects: Sequence[dict] | None = None) -> Sequence[dict]:
    """`objects` when the caller rendered already, else the cluster's rendered manifests
    (`helm template` of the chart when the app ships one)."""
    if objects is not None:
        return objects
    if config.app.chart is not None:
        from console.kube.helm import render_chart
        return render_chart(config, cluster, tag)
    from console.render import render
    return render(config, cluster, tag)


def rendered(ctx: ClusterContext) -> Sequence[dict] | None:
    """The cluster's manifests, rendered once per pre-flight; None when rendering fails."""
    if "rendered" not in ctx.notes:
        try:
            ctx.notes["rendered"] = render_for(ctx.config, ctx.cluster, ctx.tag)
        except UserError:
            ctx.notes["rendered"] = None   # each check reports the render error itself
    return ctx.notes["rendered"]


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity as a number (cores, bytes), None when it is not one."""
    from kubernetes.utils.quantity import parse_quantity

    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return None


def check_values(config: Any, cluster: Any, tag: str = "preflight",
                 objects: Sequence[dict] | None = None,
                 used_names: set[str] | None = None,
                 own_values: Mapping[str, Any] | None = None) -> CheckResult:
    """The cluster's values hold together once rendered.

    Fails when a cluster value replaces a default of another shape (a mapping by a
    scalar, or the reverse), when the rendered replicas are not a whole number >= 0, and
    when a container's resource quantity is invalid or its request exceeds its limit.
    Values no template uses are noted (a typo such as `replica:` is ignored otherwise).
    `own_values`: `own_values_by_cluster(config)`, when the caller made it already.
    """
    cid = cluster.id
    own = (own_values if own_values is not None else own_values_by_cluster(config)).get(cid)
    problems = _shape_conflicts(config, own or {})
    try:
        objects = render_for(config, cluster, tag, objects)
    except UserError as exc:
        return CheckResult("values", False, f"render failed: {exc}", cid)
    for obj in objects:
        label = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
        spec = obj.get("spec") or {}
        replicas = spec.get("replicas") if isinstance(spec, Mapping) else None
        if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool)
                                     or replicas < 0):
            problems.append(f"{label}: replicas must be a whole number >= 0, got {replicas!r}")
        template = (spec.get("template") or {}).get("spec") if isinstance(spec, Mapping) else None
        for container in (template or {}).get("containers") or []:
            resources = (container or {}).get("resources") or {}
            if isinstance(resources, Mapping):
                problems.extend(_request_limit_conflicts(
                    resources, f"{label} container {container.get('name')!r} resources"))
    if problems:
        return CheckResult("values", False, f"cluster {cid!r}: " + "; ".join(problems), cid)
    # A chart's templates read values by paths a scan cannot follow: no note for charts.
    unused = [] if config.app.chart else sorted(
        set(cluster.values or {}) - (used_names if used_names is not None
                                     else _used_names(config)))
    note = f"; not used by any template: {', '.join(unused)}" if unused else ""
    return CheckResult("values", True, f"{len(cluster.values or {})} value(s) consistent{note}",
                       cid)


def own_values_by_cluster(config: Any) -> dict[str, Any]:
    """cluster id -> the `values` its own entry of the fleet file sets (before the defaults
    are merged in). Made once per pre-flight: looking one cluster up in the fleet file's
    list was a walk over every cluster, per cluster (a million steps at 1,000 clusters)."""
    own: dict[str, Any] = {}
    for entry in config.raw.get("clusters") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
            own.setdefault(entry["id"], entry.get("values"))   # the first entry counts
    return own


def _shape_conflicts(config: Any, own: Any) -> list[str]:
    """Cluster values (`own`: the cluster's entry's) that replace a default of another
    shape (merging cannot combine them)."""
    out = []

    def walk(default: Any, value: Any, path: str) -> None:
        if isinstance(default, Mapping) and isinstance(value, Mapping):
            for key in value:
                if key in default:
                    walk(default[key], value[key], f"{path}.{key}")
        elif isinstance(default, Mapping) != isinstance(value, Mapping):
            out.append(f"{path} is a {type(value).__name__} here but a "
                       f"{type(default).__name__} in defaults.values")

    if isinstance(own, Mapping):
        walk(dict(config.defaults or {}), own, "values")
    return out


def _used_names(config: Any) -> set[str]:
    from console.render import manifest_files

    names: set[str] = set()
    for path in manifest_files(config):
        names.update(_PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
    return names


def _request_limit_conflicts(resources: Mapping[str, Any], where: str) -> list[str]:
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    out: list[str] = []
    if not isinstance(requests, Mapping) or not isinstance(limits, Mapping):
        return [f"{where}: requests and limits must be mappings"]
    for name, raw in {**requests, **limits}.items():
        if quantity(raw) is None:
            out.append(f"{where}: {name} {raw!r} is not a Kubernetes quantity")
    for name in requests:
        req, lim = quantity(requests[name]), quantity(limits.get(name))
        if req is not None and lim is not None and req > lim:
            out.append(f"{where}: {name} request {requests[name]} exceeds its limit {limits[name]}")
    return out


def undeployable_kind(objects: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(apiVersion, kind) of the first object of a kind the console does not deploy."""
    from console.kube.driver import RESOURCE_PATHS

    for obj in objects:
        key = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if key not in RESOURCE_PATHS:
            return key
    return None


def check_dry_run(client: Any, config: Any, cluster: Any, tag: str,
                  objects: Sequence[dict] | None = None,
                  namespace_exists: bool | None = None) -> CheckResult:
    """The API server accepts the rendered manifests (`dryRun=All`; see the module doc).

    `namespace_exists` is what an earlier check found; None reads it here.
    """
    from console.kube.driver import FIELD_MANAGER, RESOURCE_PATHS

    cid, ns = cluster.id, cluster.namespace
    kube = as_kube(client, cid)
    try:
        objects = render_for(config, cluster, tag, objects)
    except UserError as exc:
        return CheckResult("dry-run", False, f"render failed: {exc}", cid)
    strange = undeployable_kind(objects)
    if strange:
        return CheckResult("dry-run", False, f"kind {strange[1]!r} ({strange[0]}) is not one "
                           "the console deploys", cid)
    try:
        if namespace_exists is None:
            namespace_exists = _namespace_exists(kube, ns)
        for obj in objects:
            base = RESOURCE_PATHS[(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))]
            meta = dict(obj.get("metadata") or {})
            if namespace_exists:
                kube.request("PATCH", base.format(ns=ns) + f"/{meta.get('name', '')}",
                             {"dryRun": "All", "fieldManager": FIELD_MANAGER, "force": True},
                             body={**obj, "metadata": {**meta, "namespace": ns}},
                             content_type=APPLY_CONTENT_TYPE, timeout=PING_TIMEOUT)
            else:
                name = str(meta.pop("name", "") or "app")
                meta.update(namespace=FIRST_RELEASE_NAMESPACE,
                            generateName=f"{name[:40]}-preflight-")
                # A create that stores nothing: safe to retry.
                kube.request("POST", base.format(ns=FIRST_RELEASE_NAMESPACE),
                             {"dryRun": "All", "fieldManager": FIELD_MANAGER,
                              "fieldValidation": "Strict"},
                             body={**obj, "metadata": meta}, timeout=PING_TIMEOUT)
    except ClusterError as exc:
        where = "" if namespace_exists else (
            f" (first release: dry-run in namespace {FIRST_RELEASE_NAMESPACE!r}, as namespace "
            f"{ns!r} does not exist yet)")
        return CheckResult("dry-run", False, f"the API server refused the manifests{where}: "
                           f"{exc.reason}", cid)
    how = "server-side apply, dryRun=All" if namespace_exists else \
        f"first release: created as a dry run in namespace {FIRST_RELEASE_NAMESPACE!r}"
    return CheckResult("dry-run", True, f"{len(objects)} object(s) accepted ({how})", cid)


def _namespace_exists(kube: Any, namespace: str) -> bool:
    try:
        kube.request("GET", f"/api/v1/namespaces/{namespace}", timeout=PING_TIMEOUT)
    except ClusterError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def values_check(ctx: ClusterContext) -> CheckResult:
    """`check_values` on the manifests rendered once for this cluster."""
    used = None if ctx.config.app.chart else ctx.once("used-names",
                                                      lambda: _used_names(ctx.config))
    own = ctx.once("own-values", lambda: own_values_by_cluster(ctx.config))
    return check_values(ctx.config, ctx.cluster, ctx.tag, rendered(ctx), used, own)


def dry_run_check(ctx: ClusterContext) -> CheckResult:
    """`check_dry_run`, knowing from the `cluster` check whether the namespace exists.

    A chart's render is dry-run the same way, plus Helm's own server-side dry run where
    the namespace exists (`console.preflight.helm`).
    """
    if ctx.config.app.chart is not None:
        from console.preflight.helm import check_helm_dry_run
        return check_helm_dry_run(ctx, rendered(ctx))
    return check_dry_run(ctx.driver.client, ctx.config, ctx.cluster, ctx.tag, rendered(ctx),
                         ctx.namespace_exists)
