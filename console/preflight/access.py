"""The `access` check: may these credentials do everything a release does?

One SelfSubjectRulesReview per cluster (what `kubectl auth can-i --list -n NS` sends)
lists the rules that apply to the credentials in the app's namespace - its Role's rules
and those of ClusterRoles bound cluster-wide - and every permission of `console.rbac` is
checked against them locally. Only when the server says its list is incomplete (an
authorizer other than RBAC, such as a webhook, cannot list rules) are the permissions the
list does not grant asked one by one with SelfSubjectAccessReview.

A limit of the rules review, shared with `kubectl auth can-i --list`: it does not say
which binding a rule comes from, so a rule on a cluster-scoped resource (nodes) that a
namespaced Role holds counts as granted, although RBAC ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from console.kube.client import ClusterError, KubeClient
from console.preflight.model import PING_TIMEOUT, CheckResult, ClusterContext, as_kube
from console.rbac import Permission, Rule, permissions, rules

RULES_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def read_rules(kube: KubeClient, namespace: str) -> tuple[list[Mapping[str, Any]], bool]:
    """(resource rules, incomplete) of these credentials in `namespace`; raises ClusterError."""
    answer = kube.request("POST", RULES_REVIEWS, body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace}}, timeout=PING_TIMEOUT)   # no side effects: retried
    status = answer.get("status") or {}
    found = [r for r in status.get("resourceRules") or [] if isinstance(r, Mapping)]
    return found, bool(status.get("incomplete"))


def allowed_by_rules(perm: Permission, found: Sequence[Mapping[str, Any]],
                     namespace: str) -> bool:
    """Whether one of the listed rules grants `perm` (as RBAC matches a PolicyRule)."""
    def has(values: Any, wanted: str) -> bool:
        return "*" in (values or ()) or wanted in (values or ())

    for rule in found:
        names = rule.get("resourceNames") or ()
        if (has(rule.get("verbs"), perm.verb) and has(rule.get("apiGroups"), perm.group)
                and has(rule.get("resources"), perm.resource)
                and (not names or (perm.own_namespace and namespace in names))):
            return True
    return False


def review_access(kube: KubeClient, perm: Permission, namespace: str) -> bool:
    """One SelfSubjectAccessReview for `perm`; raises ClusterError."""
    attributes = {"verb": perm.verb, "group": perm.group, "resource": perm.resource}
    if not perm.cluster_wide:
        attributes["namespace"] = namespace
    if perm.own_namespace:
        attributes["name"] = namespace
    answer = kube.request("POST", ACCESS_REVIEWS, body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes}}, timeout=PING_TIMEOUT)
    return bool((answer.get("status") or {}).get("allowed"))


def find_denials(kube: KubeClient, namespace: str, wanted: Sequence[Permission],
                 notes: dict[str, Any] | None = None) -> list[Permission]:
    """The permissions of `wanted` these credentials lack (see the module doc).

    `notes`, when given, receives the rules read (key "rules"), for the namespace check.
    Raises ClusterError when the cluster cannot be asked.
    """
    found, incomplete = read_rules(kube, namespace)
    if notes is not None and not incomplete:
        notes["rules"] = found
    missing = [p for p in wanted if not allowed_by_rules(p, found, namespace)]
    if missing and incomplete:
        missing = [p for p in missing if not review_access(kube, p, namespace)]
    return missing


def describe_denial(perm: Permission, namespace: str) -> str:
    """`patch deployments.apps in namespace 'y'` (or `... cluster-wide`)."""
    return f"{perm.describe()} " + ("cluster-wide" if perm.cluster_wide
                                    else f"in namespace {namespace!r}")


def rules_for(ctx: ClusterContext) -> tuple[Rule, ...]:
    """The rules this cluster's release needs: a chart's from its own render (its values
    may add kinds other clusters do not render; the render is the one the `values` and
    `dry-run` checks use), manifests' the same for every cluster (worked out once)."""
    if ctx.config.app.chart is None:
        return ctx.once("rbac-rules", lambda: rules(ctx.config))
    from console.preflight.manifests import rendered
    # A failed render: the storage and Deployment rights still count, and the
    # `dry-run` row names the render error.
    return rules(ctx.config, ctx.cluster, rendered(ctx) or ())


def access_check(ctx: ClusterContext) -> CheckResult:
    """Every permission as one row: every denial listed, and what to do about them."""
    cid = ctx.cluster.id
    namespace = ctx.cluster.namespace
    wanted = permissions(rules_for(ctx))
    try:
        missing = find_denials(as_kube(ctx.driver.client, cid), namespace, wanted, ctx.notes)
    except ClusterError as exc:
        return CheckResult("access", False, f"cannot ask the cluster: {exc.reason}", cid)
    if not missing:
        return CheckResult("access", True,
                           f"all {len(wanted)} permissions granted in namespace {namespace!r}",
                           cid)
    denials = ", ".join(describe_denial(perm, namespace) for perm in missing)
    return CheckResult("access", False, f"cluster {cid!r}: denied: {denials}; ask an admin to "
                       f"apply `release-console rbac {cid}`", cid)
