"""Least privilege: the one list of what the console may do in a cluster, and its manifests.

`rules(config, cluster)` is the single source of truth: the rules printed by
`release-console rbac CLUSTER` (Namespace, ServiceAccount, Role, RoleBinding, and a
read-only ClusterRole for nodes) and the permissions pre-flight asks each cluster about
with one SelfSubjectRulesReview (`permissions(rules)`). A chart is rendered per cluster,
with that cluster's values: what one cluster renders another may not. Each rule carries the reason it exists,
printed as a comment above it.

What a release does, and so what it needs (see `console/kube/driver.py`):
server-side apply of the app's manifests (`patch`, and `create` because the API server
authorizes an apply that creates the object as `create`), read and watch the Deployment
and its pods, list ReplicaSets for the revision history, list events for the reasons of a
stuck rollout, delete the Deployment when a cluster's first release is rolled back, read
its own namespace, and take, renew and give back the release lock (a Lease in the
namespace). The namespace itself is created by the admin applying these manifests,
so the console never needs a cluster-wide `create namespaces`.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from console.config import Cluster, FleetConfig
from console.errors import ConfigError

SERVICE_ACCOUNT = "release-console"
NODE_READER = "release-console-node-reader"
MANAGED_BY = {"app.kubernetes.io/managed-by": "release-console"}


@dataclass(frozen=True)
class Rule:
    """One RBAC rule: `verbs` on `group`/`resource`, and why the console needs them.

    `scope` is "namespace" (a Role rule in the app's namespace), "own-namespace" (the
    namespace object itself: a Role may grant access to its own namespace by name) or
    "cluster" (a ClusterRole rule, for cluster-scoped resources). A `required` False rule
    is printed but not demanded by pre-flight: without it a check is less exact, not wrong.
    """

    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    scope: str = "namespace"
    required: bool = True


@dataclass(frozen=True)
class Permission:
    """One (verb, group, resource) pre-flight asks about (cluster-wide, or the namespace itself)."""

    verb: str
    group: str
    resource: str
    cluster_wide: bool = False
    own_namespace: bool = False

    def describe(self) -> str:
        """`patch deployments.apps`, as `kubectl auth can-i` spells it."""
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {resource}"


BASE_RULES: tuple[Rule, ...] = (
    Rule("apps", "deployments", ("get", "list", "watch", "create", "patch", "delete"),
         "apply the app's Deployment (server-side apply: patch, and create on the first "
         "release), read its live version, watch its rollout, patch the template back on "
         "rollback, and delete it when a first release is rolled back"),
    Rule("apps", "replicasets", ("list",),
         "each revision of the Deployment is a ReplicaSet: rollout history and rollback"),
    Rule("", "pods", ("list", "watch"),
         "verify the new pods are ready and catch image-pull and crash-loop failures early"),
    Rule("", "events", ("list",),
         "show why a rollout is stuck (FailedScheduling, BackOff) in failures and details"),
    Rule("", "namespaces", ("get",),
         "pre-flight checks that the namespace exists; this grants its own namespace only",
         scope="own-namespace"),
    Rule("coordination.k8s.io", "leases", ("get", "create", "update"),
         "the release lock (console/locks.py): one Lease per app in this namespace, so two "
         "consoles never release to the cluster at once - get to see who holds it, create "
         "it on the first release, update to take, renew and give it back (never deleted)"),
    Rule("", "nodes", ("list",),
         "read-only, cluster-wide because nodes are: pre-flight compares the release's pods' "
         "resource requests with the nodes' allocatable", scope="cluster"),
    Rule("", "pods", ("list",),
         "read-only, cluster-wide: pre-flight subtracts what the pods already placed on the "
         "nodes request, as the scheduler does (without it, only this namespace's pods count)",
         scope="cluster", required=False),
)


HELM_VERBS = ("get", "create", "patch", "delete")
HELM_STORAGE_VERBS = ("get", "list", "create", "update", "delete")


def helm_storage_rule(storage: str) -> Rule:
    """Helm's release records: one Secret or ConfigMap per revision in the namespace."""
    if storage == "secret":
        return Rule("", "secrets", HELM_STORAGE_VERBS,
                    "Helm's release records (app.helm_storage: secret, Helm's default): list "
                    "the history, create a record per revision, update their status, delete "
                    "old ones and on uninstall. A Role cannot narrow this to Helm's Secrets: "
                    "it lets the console read EVERY Secret in this namespace. "
                    "`app.helm_storage: configmap` keeps the records in ConfigMaps instead")
    return Rule("", "configmaps", HELM_STORAGE_VERBS,
                "Helm's release records (app.helm_storage: configmap): list the history, "
                "create a record per revision, update their status, delete old ones and on "
                "uninstall (these records need no rights on Secrets)")


def chart_kinds(config: FleetConfig, clusters: Sequence[Cluster] | None = None,
                objects: Sequence[dict[str, Any]] | None = None) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, chart) of every object the chart renders for `clusters` (each
    with its own values: a kind behind `{{ if .Values.x }}` may render for some clusters
    only; default every cluster of the fleet), or of `objects` when they are rendered
    already (pre-flight renders each cluster once for the release's tag)."""
    from console.kube.helm import render_chart

    chart = config.app.chart
    assert chart is not None
    if objects is None:
        objects = [o for cluster in (config.clusters if clusters is None else clusters)
                   for o in render_chart(config, cluster, "rbac")]
    found: dict[tuple[str, str], None] = {}
    for o in objects:
        if isinstance(o, dict) and o.get("kind"):
            found.setdefault((str(o.get("apiVersion", "")), str(o["kind"])))
    return [(api_version, kind, chart.chart) for api_version, kind in found]


def manifest_kinds(config: FleetConfig, cluster: Cluster | None = None,
                   objects: Sequence[dict[str, Any]] | None = None
                   ) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, file) of every document in the app's manifest templates (or of
    what its chart renders for `cluster` - every cluster when None - or of `objects`, the
    chart's render already made).

    The templates are read unrendered: kinds are literal, and placeholders sit in string
    values, so each template parses as YAML as it is (the same for every cluster).
    """
    from console.config import parse_yaml, read_text
    from console.render import manifest_files

    if config.app.chart is not None:
        return chart_kinds(config, None if cluster is None else [cluster], objects)

    found: list[tuple[str, str, str]] = []
    for path in manifest_files(config):
        # The one safe reader `render` uses on the same files: size, alias and duplicate-key
        # limits, errors with file and line.
        source = str(path)
        for parsed in parse_yaml(read_text(path, source, what="manifest"), source):
            doc = parsed.data
            if isinstance(doc, dict) and doc.get("kind"):
                found.append((str(doc.get("apiVersion", "")), str(doc["kind"]), str(path)))
    return found


def applied_resource(api_version: str, kind: str) -> tuple[str, str] | None:
    """(group, resource) of a kind the cluster driver can apply, else None."""
    from console.kube.driver import RESOURCE_PATHS

    path = RESOURCE_PATHS.get((api_version, kind))
    if path is None:
        return None
    resource = path.rsplit("/", 1)[-1]
    group = api_version.rpartition("/")[0]   # "apps/v1" -> "apps", "v1" -> ""
    return group, resource


def rules(config: FleetConfig | None = None, cluster: Cluster | None = None,
          objects: Sequence[dict[str, Any]] | None = None) -> tuple[Rule, ...]:
    """Every rule the console needs; with a fleet config, also apply rights for its other kinds.

    For a chart the kinds are those it renders for `cluster` with that cluster's values
    (`objects`: that render, when made already); without `cluster`, what any cluster's
    render holds. Raises `ConfigError` naming the file when a template holds a kind the
    console cannot apply.
    """
    extra: dict[tuple[str, str], Rule] = {}
    chart = config.app.chart if config is not None else None
    if config is not None:
        for api_version, kind, path in manifest_kinds(config, cluster, objects):
            target = applied_resource(api_version, kind)
            if target is None:
                raise ConfigError(f"{path}: kind {kind!r} ({api_version}) is not one the "
                                  "console deploys")
            if target == ("apps", "deployments") or target in extra:
                continue
            if chart is not None:
                why = (f"the chart renders a {kind}: Helm reads it, creates it, patches it "
                       "(three-way merge) and deletes it when the chart drops it or on "
                       "uninstall")
                if target == ("", "secrets"):
                    why += (". A Role cannot narrow these to the chart's Secrets: get lets "
                            "the console read EVERY Secret in this namespace")
                extra[target] = Rule(target[0], target[1], HELM_VERBS, why)
                continue
            extra[target] = Rule(target[0], target[1], ("create", "patch"),
                                 f"the app's manifests hold a {kind}: server-side apply "
                                 "(patch, and create the first time)")
    if chart is not None:
        # Helm's revisions replace the ReplicaSet history; its records live in the namespace.
        base = tuple(r for r in BASE_RULES if r.resource != "replicasets")
        return base + (helm_storage_rule(chart.storage),) + tuple(extra.values())
    return BASE_RULES + tuple(extra.values())


def permissions(rule_list: Iterable[Rule] = BASE_RULES) -> tuple[Permission, ...]:
    """The (verb, group, resource) checks pre-flight makes, one per verb of every rule."""
    return tuple(Permission(verb, rule.group, rule.resource,
                            cluster_wide=rule.scope == "cluster",
                            own_namespace=rule.scope == "own-namespace")
                 for rule in rule_list if rule.required for verb in rule.verbs)


def _flow(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _rule_yaml(rule: Rule, namespace: str) -> str:
    lines = [f"  # {line}" for line in textwrap.wrap(rule.why, 84)]
    lines += [f"  - apiGroups: {_flow([rule.group])}",
              f"    resources: {_flow([rule.resource])}"]
    if rule.scope == "own-namespace":
        lines.append(f"    resourceNames: {_flow([namespace])}")
    lines.append(f"    verbs: {_flow(rule.verbs)}")
    return "\n".join(lines)


def _doc(obj: dict, rule_list: Sequence[Rule] = (), namespace: str = "") -> str:
    text = yaml.safe_dump(obj, sort_keys=False).rstrip("\n")
    if rule_list:
        text += "\nrules:\n" + "\n".join(_rule_yaml(r, namespace) for r in rule_list)
    return text


def _helm_notes(config: FleetConfig, namespace: str, rule_list: Sequence[Rule]) -> list[str]:
    """The header lines that say what Helm costs in rights: its storage, and the Secrets
    the chart renders (`rule_list`: the rules printed for this cluster)."""
    chart = config.app.chart
    if chart is None:
        return []
    lines = [f"# The app ships as Helm chart {chart.chart} (release {chart.release!r})."]
    if chart.storage == "secret":
        return lines + [
            "# WARNING: Helm keeps its release records in Secrets, so these rules let the",
            f"# console read EVERY Secret in namespace {namespace!r}. For narrower rules set",
            "# `app.helm_storage: configmap` (records in ConfigMaps, no Secret access for",
            "# them)."]
    lines.append("# Helm keeps its release records in ConfigMaps (app.helm_storage: configmap),")
    if any(r.resource == "secrets" and r.group == "" for r in rule_list):
        # The chart's own Secrets still need rights, and `get` cannot be limited to them.
        return lines + [
            "# which need no Secret access. But the chart renders a Secret for this cluster,",
            "# so get, create, patch and delete on Secrets are granted (Helm manages the",
            "# chart's Secrets, and a Role cannot narrow that to them): these rules let the",
            f"# console read EVERY Secret in namespace {namespace!r}."]
    return lines + ["# and the chart renders no Secret: no access to Secrets is granted."]


def manifests(cluster: Cluster, config: FleetConfig) -> str:
    """The YAML documents (separated by `---`) an admin applies once for `cluster`."""
    ns = cluster.namespace
    all_rules = rules(config, cluster)   # a chart rendered with this cluster's values
    role_rules = [r for r in all_rules if r.scope != "cluster"]
    cluster_rules = [r for r in all_rules if r.scope == "cluster"]
    binding_name = f"release-console-{ns}"
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]
    header = "\n".join([
        f"# Least-privilege access for release-console to cluster {cluster.id!r}: app "
        f"{config.app.name!r} in namespace {ns!r}.",
        "# Apply once as a cluster admin:  kubectl apply -f <this file>",
        "# Then give the console a token of the ServiceAccount, e.g. for a year:",
        f"#   kubectl create token {SERVICE_ACCOUNT} -n {ns} --duration=8760h",
        "# (or a long-lived token Secret of type kubernetes.io/service-account-token),",
        "# and point this cluster's credentials in clusters.yaml at a kubeconfig using it.",
        "# SelfSubjectRulesReview needs no rule: every authenticated user may ask it.",
        *_helm_notes(config, ns, all_rules),
    ])
    docs = [
        header + "\n" + _doc({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": ns, "labels": dict(MANAGED_BY)}}),
        _doc({"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns, "labels": dict(MANAGED_BY)}}),
        _doc({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns, "labels": dict(MANAGED_BY)}},
             role_rules, ns),
        _doc({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
              "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns, "labels": dict(MANAGED_BY)},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                          "name": SERVICE_ACCOUNT},
              "subjects": subject}),
    ]
    if cluster_rules:
        docs += [
            _doc({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                  "metadata": {"name": NODE_READER, "labels": dict(MANAGED_BY)}},
                 cluster_rules, ns),
            _doc({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                  "metadata": {"name": binding_name, "labels": dict(MANAGED_BY)},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": NODE_READER},
                  "subjects": subject}),
        ]
    return "\n---\n".join(docs) + "\n"
