"""The checks that a cluster can be talked to at all, and what it runs now.

In order: the cluster id and namespace are valid names (`names`); its credentials load
(`credentials`: the kubeconfig file, the Vault secret or the variable, with the pins of
the fleet file); it answers (`cluster`: one read of the app's Deployment - which, where
it exists, also says the namespace exists and what runs - else of the app's namespace,
which says whether the namespace exists); the namespace exists or the credentials may
create it (`namespace`, from the rules the `access` check read); and the app's live
version (`live`, for the printed plan and the release's from-version; no request when the
namespace does not exist yet or the `cluster` check read the Deployment).

A cluster whose credentials cannot be loaded, or that does not answer, gets exactly one
failing line: the later checks that need the cluster are left out.
"""

from __future__ import annotations

from console.errors import UserError
from console.kube.client import ClusterError
from console.kube.driver import LiveDeployment
from console.preflight.access import allowed_by_rules, review_access
from console.preflight.model import PING_TIMEOUT, CheckResult, ClusterContext, reason
from console.rbac import Permission


def fleet_file(config: object) -> str:
    """The fleet file in use, as the user named it (for messages)."""
    return str(getattr(config, "source", "") or getattr(config, "path", "") or "the fleet file")


def check_names(ctx: ClusterContext) -> CheckResult:
    """The cluster id and its namespace are DNS-1123 labels."""
    from console.names import validate_dns_label
    try:
        validate_dns_label(ctx.cluster.id, "cluster id")
        validate_dns_label(ctx.cluster.namespace, "namespace")
    except UserError as exc:
        return CheckResult("names", False, str(exc), ctx.cluster.id)
    return CheckResult("names", True, f"namespace {ctx.cluster.namespace}", ctx.cluster.id)


def check_credentials(ctx: ClusterContext) -> CheckResult:
    """The cluster's credentials load and pass the fleet file's pins (no request yet)."""
    try:
        ctx.driver   # noqa: B018 - builds the client: resolves the credentials once
    except (ClusterError, UserError) as exc:
        ctx.reachable, ctx.stopped = False, True
        return CheckResult("credentials", False, f"{reason(exc)} (cluster {ctx.cluster.id!r} "
                           f"of {fleet_file(ctx.config)})", ctx.cluster.id)
    return CheckResult("credentials", True, "loaded", ctx.cluster.id)


def check_cluster_answers(ctx: ClusterContext) -> CheckResult:
    """The API server answers a read of the app's Deployment or of its namespace (and
    whether the namespace exists).

    The read stands in for `GET /version`: it proves the same reachability, and pre-flight
    needs its answer anyway. The app's Deployment is read first (manifests; a chart's live
    state is Helm's): where it exists - every release but a cluster's first - it says the
    namespace exists and what runs there, and the namespace is not read at all (one
    request fewer per cluster). Absent or not readable, the namespace is read as before.
    """
    if ctx.config.app.chart is None:
        try:
            deployment = ctx.driver.read_deployment(timeout=PING_TIMEOUT)
        except ClusterError as exc:
            if exc.status != 403:
                ctx.reachable = False
                return CheckResult("cluster", False, exc.reason, ctx.cluster.id)
            deployment = None   # not readable: the namespace read and `live` say the rest
        if deployment is not None:
            ctx.namespace_exists = True
            ctx.live = ctx.driver.describe(deployment)
            return CheckResult("cluster", True, f"answers ({ctx.driver.client.server})",
                               ctx.cluster.id)
    ns = ctx.cluster.namespace
    try:
        ctx.driver.client.request("GET", f"/api/v1/namespaces/{ns}", timeout=PING_TIMEOUT)
        ctx.namespace_exists = True
    except ClusterError as exc:
        if exc.status == 404:
            ctx.namespace_exists = False
        elif exc.status == 403:
            ctx.namespace_exists = None   # it answered; the namespace check says the rest
        else:
            ctx.reachable = False
            return CheckResult("cluster", False, exc.reason, ctx.cluster.id)
    return CheckResult("cluster", True, f"answers ({ctx.driver.client.server})", ctx.cluster.id)


def check_namespace(ctx: ClusterContext) -> CheckResult:
    """The namespace exists, or the credentials may create it."""
    ns, cid = ctx.cluster.namespace, ctx.cluster.id
    if ctx.namespace_exists:
        return CheckResult("namespace", True, f"{ns} exists", cid)
    if ctx.namespace_exists is None:
        return CheckResult("namespace", False, f"the credentials may not read namespace {ns} "
                           f"(ask an admin to apply `release-console rbac {cid}`)", cid)
    create = Permission("create", "", "namespaces", cluster_wide=True)
    try:
        rules = ctx.notes.get("rules")
        may = allowed_by_rules(create, rules, ns) if rules is not None else \
            review_access(ctx.driver.client, create, ns)
    except ClusterError as exc:
        return CheckResult("namespace", False, exc.reason, cid)
    if may:
        return CheckResult("namespace", True, f"{ns} absent; will be created", cid)
    return CheckResult("namespace", False, f"namespace {ns} does not exist and the credentials "
                       "may not create it (ask an admin to apply `release-console rbac "
                       f"{cid}`)", cid)


def check_live_version(ctx: ClusterContext) -> CheckResult:
    """Read what the cluster runs now (the release's from-version)."""
    if ctx.live is not None:
        pass                                      # the `cluster` check read it
    elif ctx.namespace_exists is False:
        ctx.live = LiveDeployment(exists=False)   # nothing can run in a missing namespace
    else:
        try:
            ctx.live = ctx.driver.live(timeout=PING_TIMEOUT)
        except ClusterError as exc:
            return CheckResult("live", False, exc.reason, ctx.cluster.id)
    if not ctx.live.exists:
        return CheckResult("live", True, "not deployed yet", ctx.cluster.id)
    return CheckResult("live", True, f"runs {ctx.live.version or ctx.live.image}",
                       ctx.cluster.id)
