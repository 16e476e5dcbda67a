"""The rights a shard of a release run as shards (`console.engine.shards`) needs on the
shard board's cluster, asked before anything is touched: get, create and update on
Leases in the app's namespace there - one SelfSubjectRulesReview (what `kubectl auth
can-i --list -n NS` sends), as pre-flight asks its own clusters
(`console.preflight.access`), with the release's request timeout."""

from __future__ import annotations

from console.kube.client import KubeClient
from console.preflight.access import ACCESS_REVIEWS, RULES_REVIEWS, allowed_by_rules
from console.rbac import Permission

BOARD_RIGHTS = tuple(Permission(verb, "coordination.k8s.io", "leases")
                     for verb in ("get", "create", "update"))


def lease_rights_missing(kube: KubeClient, namespace: str,
                         timeout: float) -> list[Permission]:
    """Which of BOARD_RIGHTS these credentials lack in `namespace`; raises
    `ClusterError` when the cluster cannot be asked. The request timeout, not
    pre-flight's short ping timeout: a slow answer on a loaded machine must not read
    as an unreachable board."""
    status = kube.request("POST", RULES_REVIEWS, body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace}}, timeout=timeout).get("status") or {}
    found = [r for r in status.get("resourceRules") or [] if isinstance(r, dict)]
    missing = [p for p in BOARD_RIGHTS if not allowed_by_rules(p, found, namespace)]
    if missing and status.get("incomplete"):
        # An authorizer that cannot list its rules: ask about each one left.
        missing = [p for p in missing if not _allowed(kube, p, namespace, timeout)]
    return missing


def _allowed(kube: KubeClient, perm: Permission, namespace: str, timeout: float) -> bool:
    """One SelfSubjectAccessReview for `perm` in `namespace`."""
    answer = kube.request("POST", ACCESS_REVIEWS, body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": perm.verb, "group": perm.group,
                                        "resource": perm.resource,
                                        "namespace": namespace}}}, timeout=timeout)
    return bool((answer.get("status") or {}).get("allowed"))
