"""Decoding the Kubernetes protobuf envelope that kubectl 1.32+ sends as request bodies.

kubectl's generators (and helm's typed deletes: `DeleteOptions`) (`create namespace`, `create deployment`, `create configmap|secret|
serviceaccount|role|rolebinding|clusterrole|clusterrolebinding`, `auth can-i`, `auth whoami`)
send typed objects
as protobuf: the `k8s\\0` magic, the `runtime.Unknown` wrapper (1 typeMeta {1 apiVersion,
2 kind}, 2 raw), and the object. This decoder knows those kinds field by field (numbers
from k8s.io/api's generated.proto) and returns the JSON-shaped dict the rest of the
simulator works with. Anything it does not know - another kind, or a non-empty field it
has no name for - raises ProtobufError (the server answers 415) rather than dropping data.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not a protobuf envelope this decoder understands."""


# message -> field number -> (json name, type, repeated). Types: str, int, bool, map (string
# values), map64 (bytes values, base64 in JSON), or another message name.
Field = tuple[str, str, bool]
SCHEMA: dict[str, dict[int, Field]] = {
    # ObjectMeta: what a client may set; server-set fields (uid, resourceVersion, times...) are
    # skipped below, as the API server ignores them on create.
    "ObjectMeta": {1: ("name", "str", False), 2: ("generateName", "str", False),
                   3: ("namespace", "str", False), 11: ("labels", "map", False),
                   12: ("annotations", "map", False), 14: ("finalizers", "str", True)},
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False)},
    "NamespaceSpec": {1: ("finalizers", "str", True)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map", False),
                  3: ("binaryData", "map64", False), 4: ("immutable", "bool", False)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map64", False),
               3: ("type", "str", False), 4: ("stringData", "map", False), 5: ("immutable", "bool", False)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False), 2: ("secrets", "ObjectReference", True),
                       3: ("imagePullSecrets", "LocalObjectReference", True),
                       4: ("automountServiceAccountToken", "bool", False)},
    "ObjectReference": {1: ("kind", "str", False), 2: ("namespace", "str", False), 3: ("name", "str", False),
                        4: ("uid", "str", False), 5: ("apiVersion", "str", False),
                        6: ("resourceVersion", "str", False), 7: ("fieldPath", "str", False)},
    "LocalObjectReference": {1: ("name", "str", False)},
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "PolicyRule": {1: ("verbs", "str", True), 2: ("apiGroups", "str", True), 3: ("resources", "str", True),
                   4: ("resourceNames", "str", True), 5: ("nonResourceURLs", "str", True)},
    "RoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                    3: ("roleRef", "RoleRef", False)},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                           3: ("roleRef", "RoleRef", False)},
    "Subject": {1: ("kind", "str", False), 2: ("apiGroup", "str", False), 3: ("name", "str", False),
                4: ("namespace", "str", False)},
    "RoleRef": {1: ("apiGroup", "str", False), 2: ("kind", "str", False), 3: ("name", "str", False)},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", False),
                                2: ("spec", "SelfSubjectAccessReviewSpec", False)},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", False),
                                    2: ("nonResourceAttributes", "NonResourceAttributes", False)},
    "ResourceAttributes": {1: ("namespace", "str", False), 2: ("verb", "str", False), 3: ("group", "str", False),
                           4: ("version", "str", False), 5: ("resource", "str", False),
                           6: ("subresource", "str", False), 7: ("name", "str", False)},
    "NonResourceAttributes": {1: ("path", "str", False), 2: ("verb", "str", False)},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta", False)},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta", False),
                               2: ("spec", "SelfSubjectRulesReviewSpec", False)},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "str", False)},
    # What `kubectl create deployment NAME --image=I [--replicas=N] [--port=P]` sends.
    "Deployment": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "DeploymentSpec", False)},
    "DeploymentSpec": {1: ("replicas", "int", False), 2: ("selector", "LabelSelector", False),
                       3: ("template", "PodTemplateSpec", False), 4: ("strategy", "DeploymentStrategy", False),
                       5: ("minReadySeconds", "int", False), 6: ("revisionHistoryLimit", "int", False),
                       7: ("paused", "bool", False), 9: ("progressDeadlineSeconds", "int", False)},
    "DeploymentStrategy": {1: ("type", "str", False), 2: ("rollingUpdate", "RollingUpdateDeployment", False)},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intstr", False), 2: ("maxSurge", "intstr", False)},
    "LabelSelector": {1: ("matchLabels", "map", False), 2: ("matchExpressions", "LabelSelectorRequirement", True)},
    "LabelSelectorRequirement": {1: ("key", "str", False), 2: ("operator", "str", False),
                                 3: ("values", "str", True)},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodSpec", False)},
    "PodSpec": {2: ("containers", "Container", True), 3: ("restartPolicy", "str", False),
                4: ("terminationGracePeriodSeconds", "int", False), 6: ("dnsPolicy", "str", False),
                7: ("nodeSelector", "map", False), 8: ("serviceAccountName", "str", False),
                15: ("imagePullSecrets", "LocalObjectReference", True), 19: ("schedulerName", "str", False),
                20: ("initContainers", "Container", True)},
    "Container": {1: ("name", "str", False), 2: ("image", "str", False), 3: ("command", "str", True),
                  4: ("args", "str", True), 5: ("workingDir", "str", False), 6: ("ports", "ContainerPort", True),
                  7: ("env", "EnvVar", True), 8: ("resources", "ResourceRequirements", False),
                  13: ("terminationMessagePath", "str", False), 14: ("imagePullPolicy", "str", False),
                  20: ("terminationMessagePolicy", "str", False)},
    "ContainerPort": {1: ("name", "str", False), 2: ("hostPort", "int", False), 3: ("containerPort", "int", False),
                      4: ("protocol", "str", False), 5: ("hostIP", "str", False)},
    "EnvVar": {1: ("name", "str", False), 2: ("value", "str", False)},
    "ResourceRequirements": {1: ("limits", "mapq", False), 2: ("requests", "mapq", False)},
    # What client-go's typed Delete sends (helm uninstall purging its release records).
    "DeleteOptions": {1: ("gracePeriodSeconds", "int", False), 2: ("preconditions", "Preconditions", False),
                      3: ("orphanDependents", "bool", False), 4: ("propagationPolicy", "str", False),
                      5: ("dryRun", "str", True)},
    "Preconditions": {1: ("uid", "str", False), 2: ("resourceVersion", "str", False)},
}
# Fields of these messages that a server ignores on create (status, server-set metadata).
_IGNORED = {"ObjectMeta": {4, 5, 6, 7, 8, 9, 10, 15, 17}}
# Pointer fields, where an explicit zero or false means something (replicas: 0).
_POINTERS = {("DeploymentSpec", 1), ("DeploymentSpec", 6), ("DeploymentSpec", 9), ("PodSpec", 4),
             ("ServiceAccount", 4), ("ConfigMap", 4), ("Secret", 5), ("DeleteOptions", 1),
             ("DeleteOptions", 3)}
_STATUS_FIELD = 3  # status of Namespace and the reviews: output only


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs of one message; length-delimited values stay bytes."""
    out: list[tuple[int, Any]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ProtobufError("truncated field")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _signed(value: int) -> int:
    """A varint as the int32/int64 it encodes (negative numbers take ten bytes)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, value: Any) -> Any:
    if kind == "str":
        if not isinstance(value, bytes):
            raise ProtobufError("expected a string")
        return value.decode("utf-8")
    if kind == "int":
        return _signed(value)
    if kind == "bool":
        return bool(value)
    raise ProtobufError(f"unknown scalar type {kind}")


def message(name: str, buf: bytes) -> dict[str, Any]:
    """Decode one message of a known type into a JSON-shaped dict."""
    schema = SCHEMA[name]
    out: dict[str, Any] = {}
    for number, value in fields(buf):
        spec = schema.get(number)
        if spec is None:
            empty = value in (b"", 0)
            if number in _IGNORED.get(name, ()) or empty or (number == _STATUS_FIELD and name in (
                    "Namespace", "Deployment", "SelfSubjectAccessReview", "SelfSubjectReview",
                    "SelfSubjectRulesReview")):
                continue
            raise ProtobufError(f"{name} field {number} is not understood by the simulator")
        key, kind, repeated = spec
        if kind in ("map", "map64", "mapq"):
            entry = dict(fields(value))
            raw = entry.get(2, b"")
            if kind == "map64":
                item: Any = base64.b64encode(raw).decode()
            elif kind == "mapq":  # resource.Quantity {1 string}
                item = _scalar("str", dict(fields(raw)).get(1, b""))
            else:
                item = _scalar("str", raw)
            out.setdefault(key, {})[_scalar("str", entry.get(1, b""))] = item
            continue
        if kind == "intstr":  # intstr.IntOrString {1 type (0 int, 1 string), 2 intVal, 3 strVal}
            parts = dict(fields(value))
            out[key] = _scalar("str", parts.get(3, b"")) if parts.get(1) == 1 else _signed(parts.get(2, 0))
            continue
        decoded = message(kind, value) if kind in SCHEMA else _scalar(kind, value)
        if decoded in ("", 0, False) and not repeated and (name, number) not in _POINTERS:
            continue  # Go writes every non-pointer field; JSON omits the zero ones
        if repeated:
            out.setdefault(key, []).append(decoded)
        else:
            out[key] = decoded
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The object in a `k8s\\0`-prefixed protobuf body, as a JSON-shaped dict."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic")
    api_version = kind = ""
    raw = b""
    for number, value in fields(body[len(MAGIC):]):
        if number == 1:
            for n, v in fields(value):
                if n == 1:
                    api_version = _scalar("str", v)
                elif n == 2:
                    kind = _scalar("str", v)
        elif number == 2:
            raw = value
    if kind not in SCHEMA or kind[0].islower():
        raise ProtobufError(f"the simulator cannot decode a protobuf {kind or 'object'}; "
                            "send it as JSON (for example with kubectl apply -f)")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    obj.update(message(kind, raw))
    return obj
