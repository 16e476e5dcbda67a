"""The resource types the simulator serves and the discovery documents describing them.

`RESOURCES` is the one table: routing, storage keys, RBAC names, discovery and OpenAPI all
read it. Discovery answers plain `APIVersions`/`APIGroupList`/`APIResourceList` JSON (kubectl
falls back to them from aggregated discovery when the reply is plain `application/json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERSION_INFO = {
    # /usr/bin/kubectl (the Cloud SDK dispatcher) runs kubectl.1.<minor> for the server's
    # minor and ships 1.27-1.33; 1.32 is the version whose traffic the simulator follows.
    "major": "1", "minor": "32", "gitVersion": "v1.32.4-sim",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.6", "compiler": "gc",
    "platform": "linux/amd64",
}

CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served resource: `group` ("" for core), `version`, plural `name`, `kind`."""

    group: str
    version: str
    name: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = CRUD
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """`v1` or `group/version`."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Storage key: `apps/deployments`, `/pods`."""
        return f"{self.group}/{self.name}"

    @property
    def singular(self) -> str:
        """The singular name (lowercase kind)."""
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """`deployments.apps`, or `pods` in the core group (as error messages name them)."""
        return f"{self.name}.{self.group}" if self.group else self.name


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize"),
                 ("create", "delete", "get", "list", "patch", "update", "watch")),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), ("status", "log"), categories=("all",)),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("status",),
                 ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
                 ("all",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"),
                 categories=("all",)),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"),
                 categories=("all",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews",
                 "SelfSubjectAccessReview", False, verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectrulesreviews",
                 "SelfSubjectRulesReview", False, verbs=("create",)),
    ResourceType("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False,
                 verbs=("create",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
                 False),
)

BY_GV: dict[tuple[str, str], dict[str, ResourceType]] = {}
for _rt in RESOURCES:
    BY_GV.setdefault((_rt.group, _rt.version), {})[_rt.name] = _rt
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(rt.group for rt in RESOURCES if rt.group))


def lookup(group: str, version: str, name: str) -> ResourceType | None:
    """The resource type served at /apis/group/version/name (group "" = /api/v1)."""
    return BY_GV.get((group, version), {}).get(name)


def api_versions() -> dict[str, Any]:
    """GET /api."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def _group(name: str) -> dict[str, Any]:
    versions = sorted({rt.version for rt in RESOURCES if rt.group == name})
    gv = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gv, "preferredVersion": gv[0]}


def api_group_list() -> dict[str, Any]:
    """GET /apis."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in GROUPS]}


def api_group(name: str) -> dict[str, Any] | None:
    """GET /apis/<group>, or None when the group is not served."""
    if name not in GROUPS:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """GET /api/v1 or /apis/<group>/<version>, or None when not served."""
    types = BY_GV.get((group, version))
    if types is None:
        return None
    resources: list[dict[str, Any]] = []
    for rt in types.values():
        entry: dict[str, Any] = {"name": rt.name, "singularName": rt.singular,
                                 "namespaced": rt.namespaced, "kind": rt.kind,
                                 "verbs": list(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            kind, verbs = rt.kind, ["get", "patch", "update"]
            if sub == "scale":
                kind = "Scale"
            elif sub == "log":
                kind, verbs = "Pod", ["get"]
            elif sub == "finalize":
                verbs = ["update"]
            sub_entry = {"name": f"{rt.name}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                         "kind": kind, "verbs": verbs}
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1")
            resources.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
