"""Tokens and their rules: who may do what on one simulated cluster.

A rule is a mapping like a Kubernetes PolicyRule plus an optional namespace list:
`{"verbs": ["get", "patch"], "apiGroups": ["apps"], "resources": ["deployments"],
"namespaces": ["shop"], "resourceNames": [...]}`. Missing `apiGroups`, `resources` or
`namespaces` mean all; "*" is a wildcard everywhere. A principal without rules has every right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


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
