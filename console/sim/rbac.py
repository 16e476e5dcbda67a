"""Tokens and their rules: who may do what on one simulated cluster.

A rule is a mapping like a Kubernetes PolicyRule plus an optional namespace list:
`{"verbs": ["get", "patch"], "apiGroups": ["apps"], "resources": ["deployments"],
"namespaces": ["shop"], "resourceNames": [...]}`. Missing `apiGroups`, `resources` or
`namespaces` mean all; "*" is a wildcard everywhere. A principal without rules has every right.

`rules_review` answers a SelfSubjectRulesReview (`kubectl auth can-i --list`) from the same
rules: those that apply in the namespace asked about, as RBAC lists a Role's and the
ClusterRoles' rules, plus what every authenticated user may do (system:basic-user).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# system:basic-user and system:discovery, which RBAC lists for every authenticated user.
_BASIC_RESOURCE_RULES = ({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                          "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
                         {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
                          "resources": ["selfsubjectreviews"]})
_BASIC_NON_RESOURCE_RULES = ({"verbs": ["get"], "nonResourceURLs": [
    "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
    "/readyz", "/version", "/version/"]},)


@dataclass(frozen=True)
class Rule:
    """One allow rule."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ("*",)
    resources: tuple[str, ...] = ("*",)
    namespaces: tuple[str, ...] = ("*",)
    resource_names: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Rule:
        """A rule from a PolicyRule-like mapping."""
        def tup(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            value = raw.get(key)
            if value is None:
                return default
            return (value,) if isinstance(value, str) else tuple(str(v) for v in value)
        unknown = set(raw) - {"verbs", "apiGroups", "resources", "namespaces", "resourceNames"}
        if unknown:
            raise ValueError(f"unknown rule keys: {sorted(unknown)}")
        return cls(tup("verbs", ()), tup("apiGroups", ("*",)), tup("resources", ("*",)),
                   tup("namespaces", ("*",)), tup("resourceNames", ()))

    def allows(self, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        """Whether this rule allows the request attributes (resource may be `res/sub`)."""
        return (("*" in self.verbs or verb in self.verbs)
                and ("*" in self.api_groups or group in self.api_groups)
                and ("*" in self.resources or resource in self.resources)
                and ("*" in self.namespaces or namespace in self.namespaces)
                and (not self.resource_names or name in self.resource_names))


@dataclass(frozen=True)
class Principal:
    """The user a token stands for; `rules` None means unrestricted."""

    username: str
    groups: tuple[str, ...]
    rules: tuple[Rule, ...] | None = None

    def allowed(self, verb: str, group: str, resource: str, namespace: str = "", name: str = "") -> bool:
        """Whether the principal may do this."""
        if self.rules is None:
            return True
        return any(r.allows(verb, group, resource, namespace, name) for r in self.rules)


def principal(username: str, rules: Sequence[Mapping[str, Any]] | None) -> Principal:
    """A principal with the given rules (None = full rights)."""
    groups = ("system:authenticated",) if rules is not None else ("system:masters", "system:authenticated")
    return Principal(username, groups,
                     None if rules is None else tuple(Rule.from_mapping(r) for r in rules))


ANONYMOUS = Principal("system:anonymous", ("system:unauthenticated",), ())


def rules_review(who: Principal, namespace: str) -> dict[str, Any]:
    """The `status` of a SelfSubjectRulesReview of `who` in `namespace`."""
    resource: list[dict[str, Any]] = []
    non_resource: list[dict[str, Any]] = []
    if who.rules is None:   # system:masters: cluster-admin's wildcard rules come first
        resource.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
        non_resource.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
    resource += [dict(r) for r in _BASIC_RESOURCE_RULES]
    non_resource += [dict(r) for r in _BASIC_NON_RESOURCE_RULES]
    if who.rules is not None:
        for rule in who.rules:
            if "*" not in rule.namespaces and namespace not in rule.namespaces:
                continue
            entry: dict[str, Any] = {"verbs": list(rule.verbs), "apiGroups": list(rule.api_groups),
                                     "resources": list(rule.resources)}
            if rule.resource_names:
                entry["resourceNames"] = list(rule.resource_names)
            resource.append(entry)
    return {"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": False}
