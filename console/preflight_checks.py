"""Pre-flight checks on credentials, RBAC, the image and the rendered manifests.

Plain functions, usable alone, and registered with `console.preflight` on import (as a
release check "image" and cluster checks "access", "values", "dry-run", "capacity"):

- `check_access(api_client, namespace, cluster)`: one SelfSubjectAccessReview per verb
  the console needs (`console.rbac`); a denial names the cluster, verb and resource.
- `check_image(config, tag)`: the image tag exists in its registry (`console.registry`).
- `check_render(api_client, config, cluster, tag)`: the manifests render for the cluster,
  its values hold together (`check_values`), the API server accepts them in a
  server-side dry run (`check_dry_run`: `dryRun=All`, where the namespace exists), and
  each pod's requests fit the largest node's allocatable (`check_capacity`).

The cluster functions take a `kubernetes.client.ApiClient` (e.g. from
`console.credentials.new_api_client`) or the driver's `KubeClient`; every call has a
timeout, is retried a bounded number of times on 429/5xx (a review, a read and a dry run
have no side effects), and errors are reported without secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes.client import ApiClient

from console.config import Cluster, FleetConfig
from console.kube.client import ClusterError, KubeClient
from console.preflight import (CheckResult, ClusterCheck, ClusterContext, ReleaseCheck,
                               register)
from console.rbac import BASE_RULES, Permission, Rule, permissions, rules

CHECK_TIMEOUT = 5.0   # s for each API call a check makes
ACCESS_REVIEWS_AT_ONCE = 4   # concurrent SelfSubjectAccessReviews per cluster
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

__all__ = ["CheckResult", "check_access", "check_image", "check_render", "check_values",
           "check_dry_run", "check_capacity"]


def _kube(api_client: ApiClient | KubeClient, cluster: str | None) -> KubeClient:
    """The driver's client for raw JSON calls: timeouts, bounded retries on 429/5xx, and
    errors without secrets (a flaky cluster must not fail pre-flight on one 500)."""
    if isinstance(api_client, KubeClient):
        return api_client
    return KubeClient(cluster or "?", api_client, CHECK_TIMEOUT)


def check_access(api_client: ApiClient | KubeClient, namespace: str, cluster: str | None = None,
                 rule_list: Sequence[Rule] | None = None) -> list[CheckResult]:
    """Ask the cluster, per needed verb, whether these credentials may do it.

    One passing result when every permission is granted; else one failing result per
    denial ("cluster 'x': denied: patch deployments.apps in namespace 'y'"), in the order
    of the rules. The reviews go out a few at a time: a dozen round trips in a row would
    add up on a distant cluster.
    """
    kube = _kube(api_client, cluster)
    wanted = permissions(rule_list if rule_list is not None else BASE_RULES)

    def allowed(perm: Permission) -> bool:
        attributes = {"verb": perm.verb, "group": perm.group, "resource": perm.resource}
        if not perm.cluster_wide:
            attributes["namespace"] = namespace
        if perm.own_namespace:
            attributes["name"] = namespace
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes}}
        # A review has no side effects: the client's retries are safe.
        answer = kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                              body=body, timeout=CHECK_TIMEOUT)
        return bool((answer.get("status") or {}).get("allowed"))

    try:
        with ThreadPoolExecutor(max_workers=ACCESS_REVIEWS_AT_ONCE,
                                thread_name_prefix=f"access-{cluster}") as pool:
            answers = list(pool.map(allowed, wanted))
    except ClusterError as exc:
        return [CheckResult("access", False, f"cannot ask the cluster: {exc.reason}", cluster)]
    denied = [CheckResult("access", False, f"cluster {cluster!r}: denied: {perm.describe()} "
                          + ("cluster-wide" if perm.cluster_wide else f"in namespace {namespace!r}"),
                          cluster)
              for perm, ok in zip(wanted, answers) if not ok]
    if denied:
        return denied
    return [CheckResult("access", True,
                        f"all {len(wanted)} permissions granted in namespace {namespace!r}",
                        cluster)]


def check_image(config: FleetConfig, tag: str) -> CheckResult:
    """The release's image (`app.image:tag`) exists in its registry."""
    from console.credentials import read_vault_registry_credentials
    from console.errors import UserError
    from console.registry import image_exists

    credentials = None
    if config.app.registry.vault:
        try:
            credentials = read_vault_registry_credentials(config.app.registry.vault,
                                                          config.vault)
        except UserError as exc:
            return CheckResult("image", False, str(exc))
    result = image_exists(config.app.image, tag, config.app.registry, credentials=credentials)
    return CheckResult("image", result.ok, result.detail)


def check_render(api_client: ApiClient | KubeClient, config: FleetConfig, cluster: Cluster,
                 tag: str) -> list[CheckResult]:
    """Values, server-side dry run and node capacity for one cluster, in that order."""
    from console.errors import UserError

    try:
        objects: Sequence[dict] | None = _render(config, cluster, tag)
    except UserError:
        objects = None   # each check reports the render error itself
    return [check_values(config, cluster, tag, objects),
            check_dry_run(api_client, config, cluster, tag, objects),
            check_capacity(api_client, config, cluster, tag, objects)]


def check_values(config: FleetConfig, cluster: Cluster, tag: str = "preflight",
                 objects: Sequence[dict] | None = None) -> CheckResult:
    """The cluster's values hold together once rendered.

    Fails when a cluster value replaces a default of another shape (a mapping by a
    scalar, or the reverse), when the rendered replicas are not a whole number >= 0, and
    when a container's resource quantity is invalid or its request exceeds its limit.
    Values no template uses are noted (a typo such as `replica:` is ignored otherwise).
    """
    from console.errors import UserError

    cid = cluster.id
    problems = _shape_conflicts(config, cid)
    try:
        objects = _render(config, cluster, tag, objects)
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
    unused = [] if config.app.chart else sorted(set(cluster.values or {}) - _used_names(config))
    note = f"; not used by any template: {', '.join(unused)}" if unused else ""
    return CheckResult("values", True, f"{len(cluster.values or {})} value(s) consistent{note}",
                       cid)


def _shape_conflicts(config: FleetConfig, cid: str) -> list[str]:
    """Cluster values that replace a default of another shape (merging cannot combine them)."""
    own = next((c.get("values") for c in (config.raw.get("clusters") or [])
                if isinstance(c, Mapping) and c.get("id") == cid), None) or {}
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


def _used_names(config: FleetConfig) -> set[str]:
    from console.render import manifest_files

    names: set[str] = set()
    for path in manifest_files(config):
        names.update(_PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
    return names


def _quantity(value: Any) -> float | None:
    from kubernetes.utils.quantity import parse_quantity

    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError):
        return None


def _request_limit_conflicts(resources: Mapping[str, Any], where: str) -> list[str]:
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    out: list[str] = []
    if not isinstance(requests, Mapping) or not isinstance(limits, Mapping):
        return [f"{where}: requests and limits must be mappings"]
    for name, raw in {**requests, **limits}.items():
        if _quantity(raw) is None:
            out.append(f"{where}: {name} {raw!r} is not a Kubernetes quantity")
    for name in requests:
        req, lim = _quantity(requests[name]), _quantity(limits.get(name))
        if req is not None and lim is not None and req > lim:
            out.append(f"{where}: {name} request {requests[name]} exceeds its limit {limits[name]}")
    return out


def _render(config: FleetConfig, cluster: Cluster, tag: str,
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


def check_dry_run(api_client: ApiClient | KubeClient, config: FleetConfig, cluster: Cluster,
                  tag: str, objects: Sequence[dict] | None = None) -> CheckResult:
    """The manifests render and the API server accepts them (`dryRun=All` server-side apply).

    A namespace that does not exist yet is not a failure: the objects cannot be dry-run
    there, and the render alone is checked.
    """
    from console.kube.driver import FIELD_MANAGER, RESOURCE_PATHS
    from console.errors import UserError

    cid, ns = cluster.id, cluster.namespace
    kube = _kube(api_client, cid)
    try:
        objects = _render(config, cluster, tag, objects)
    except UserError as exc:
        return CheckResult("dry-run", False, f"render failed: {exc}", cid)
    try:
        if not _namespace_exists(kube, ns):
            return CheckResult("dry-run", True, f"{len(objects)} object(s) rendered; namespace "
                               f"{ns!r} does not exist yet, so no server-side dry run", cid)
        for obj in objects:
            key = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
            base = RESOURCE_PATHS.get(key)
            name = (obj.get("metadata") or {}).get("name", "")
            if base is None:
                return CheckResult("dry-run", False, f"kind {key[1]!r} ({key[0]}) is not one "
                                   "the console deploys", cid)
            kube.request("PATCH", base.format(ns=ns) + f"/{name}",
                         {"dryRun": "All", "fieldManager": FIELD_MANAGER, "force": True},
                         body={**obj, "metadata": {**(obj.get("metadata") or {}), "namespace": ns}},
                         content_type=APPLY_CONTENT_TYPE, timeout=CHECK_TIMEOUT)
    except ClusterError as exc:
        return CheckResult("dry-run", False, f"the API server refused the manifests: "
                           f"{exc.reason}", cid)
    return CheckResult("dry-run", True, f"{len(objects)} object(s) accepted (dryRun=All)", cid)


def _namespace_exists(kube: KubeClient, namespace: str) -> bool:
    try:
        kube.request("GET", f"/api/v1/namespaces/{namespace}", timeout=CHECK_TIMEOUT)
    except ClusterError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _pod_requests(obj: Mapping[str, Any]) -> tuple[float, float] | None:
    """(cpu cores, memory bytes) one pod of a workload requests, as the scheduler counts it."""
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec")
    if not isinstance(template, Mapping):
        return None

    def total(containers: Any) -> list[tuple[float, float]]:
        out = []
        for container in containers or []:
            req = ((container or {}).get("resources") or {}).get("requests") or {}
            out.append((_quantity(req.get("cpu", 0)) or 0.0, _quantity(req.get("memory", 0)) or 0.0))
        return out

    main = total(template.get("containers"))
    init = total(template.get("initContainers"))
    # Init containers run one at a time before the others: the pod needs the larger of
    # the biggest init container and the sum of the app containers.
    cpu = max([sum(c for c, _ in main)] + [c for c, _ in init])
    memory = max([sum(m for _, m in main)] + [m for _, m in init])
    return cpu, memory


def check_capacity(api_client: ApiClient | KubeClient, config: FleetConfig, cluster: Cluster,
                   tag: str, objects: Sequence[dict] | None = None) -> CheckResult:
    """Each rendered pod's requests fit the largest node's allocatable CPU and memory."""
    from console.errors import UserError

    cid = cluster.id
    try:
        objects = _render(config, cluster, tag, objects)
    except UserError as exc:
        return CheckResult("capacity", False, f"render failed: {exc}", cid)
    try:
        nodes = _kube(api_client, cid).request("GET", "/api/v1/nodes",
                                               timeout=CHECK_TIMEOUT).get("items") or []
    except ClusterError as exc:
        return CheckResult("capacity", False, f"cannot list nodes: {exc.reason}", cid)
    if not nodes:
        return CheckResult("capacity", False, "the cluster reports no nodes", cid)
    sizes = []
    for node in nodes:
        alloc = (node.get("status") or {}).get("allocatable") or {}
        sizes.append((_quantity(alloc.get("cpu", 0)) or 0.0, _quantity(alloc.get("memory", 0)) or 0.0,
                      (node.get("metadata") or {}).get("name", "?")))
    largest_cpu = max(s[0] for s in sizes)
    largest_memory = max(s[1] for s in sizes)
    problems = []
    for obj in objects:
        wanted = _pod_requests(obj)
        if wanted is None:
            continue
        # One node must hold the whole pod: compare with nodes that have both.
        if not any(cpu >= wanted[0] and mem >= wanted[1] for cpu, mem, _ in sizes):
            problems.append(f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}: a "
                            f"pod requests {_cpu(wanted[0])} CPU and {_mem(wanted[1])}, but the "
                            f"largest node has {_cpu(largest_cpu)} CPU and {_mem(largest_memory)}")
    if problems:
        return CheckResult("capacity", False, "; ".join(problems), cid)
    return CheckResult("capacity", True, f"pods fit the largest of {len(nodes)} node(s) "
                       f"({_cpu(largest_cpu)} CPU, {_mem(largest_memory)})", cid)


def _cpu(cores: float) -> str:
    return f"{cores:g}" if cores >= 1 else f"{cores * 1000:g}m"


def _mem(size: float) -> str:
    for unit, factor in (("Gi", 2 ** 30), ("Mi", 2 ** 20), ("Ki", 2 ** 10)):
        if size >= factor:
            return f"{size / factor:.3g}{unit}"
    return f"{size:g}"


# --------------------------------------------------------------------------- registration


def _access(ctx: ClusterContext) -> CheckResult:
    """`check_access` as one row: every denial listed, and what to do about them."""
    cid = ctx.cluster.id
    results = check_access(ctx.driver.client, ctx.cluster.namespace, cid, rules(ctx.config))
    if results[0].ok or results[0].detail.startswith("cannot ask"):
        return results[0]
    denials = ", ".join(r.detail.split(": denied: ", 1)[-1] for r in results)
    return CheckResult("access", False, f"cluster {cid!r}: denied: {denials}; ask an admin to "
                       f"apply `release-console rbac {cid}`", cid)


def _rendered(ctx: ClusterContext) -> Sequence[dict] | None:
    """The cluster's manifests, rendered once per pre-flight; None when rendering fails."""
    from console.errors import UserError

    if "rendered" not in ctx.notes:
        try:
            ctx.notes["rendered"] = _render(ctx.config, ctx.cluster, ctx.tag)
        except UserError:
            ctx.notes["rendered"] = None   # each check reports the render error itself
    return ctx.notes["rendered"]


def _dry_run(ctx: ClusterContext) -> CheckResult:
    """The server-side dry run: of the rendered manifests, or Helm's own for a chart."""
    if ctx.config.app.chart is not None:
        from console.preflight_helm import check_helm_dry_run
        return check_helm_dry_run(ctx, _rendered(ctx))
    return check_dry_run(ctx.driver.client, ctx.config, ctx.cluster, ctx.tag, _rendered(ctx))


def register_checks() -> None:
    """Add these checks to every pre-flight (`console.preflight.register` ignores repeats)."""
    register(ReleaseCheck("image", lambda config, tag, plan: check_image(config, tag)))
    register(ClusterCheck("access", _access))
    register(ClusterCheck("values", lambda ctx: check_values(
        ctx.config, ctx.cluster, ctx.tag, _rendered(ctx)), needs_cluster=False))
    register(ClusterCheck("dry-run", _dry_run))
    register(ClusterCheck("capacity", lambda ctx: check_capacity(
        ctx.driver.client, ctx.config, ctx.cluster, ctx.tag, _rendered(ctx))))


register_checks()
