"""Decoding the Kubernetes protobuf envelope that kubectl 1.32+ sends as request bodies.

Only what kubectl sends in practice is understood: the `k8s\\0` magic, the `runtime.Unknown`
wrapper (1 typeMeta {1 apiVersion, 2 kind}, 2 raw), and inside it Namespace, ConfigMap,
Secret, SelfSubjectAccessReview, SelfSubjectReview and, for any other kind, its ObjectMeta.
The result is the JSON-shaped dict the rest of the simulator works with.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not a protobuf envelope this decoder understands."""


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
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _str(value: bytes) -> str:
    return value.decode("utf-8")


def _map(entries: list[bytes], binary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in entries:
        kv = dict(fields(entry))
        value = kv.get(2, b"")
        out[_str(kv.get(1, b""))] = (base64.b64encode(value).decode() if binary else _str(value))
    return out


def _meta(buf: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    labels: list[bytes] = []
    annotations: list[bytes] = []
    for number, value in fields(buf):
        if number == 1:
            meta["name"] = _str(value)
        elif number == 2:
            meta["generateName"] = _str(value)
        elif number == 3:
            meta["namespace"] = _str(value)
        elif number == 11:
            labels.append(value)
        elif number == 12:
            annotations.append(value)
    if labels:
        meta["labels"] = _map(labels)
    if annotations:
        meta["annotations"] = _map(annotations)
    return meta


def _resource_attributes(buf: bytes) -> dict[str, str]:
    names = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource",
             6: "subresource", 7: "name"}
    return {names[n]: _str(v) for n, v in fields(buf) if n in names}


def _non_resource_attributes(buf: bytes) -> dict[str, str]:
    names = {1: "path", 2: "verb"}
    return {names[n]: _str(v) for n, v in fields(buf) if n in names}


def _body(kind: str, raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    groups: dict[int, list[bytes]] = {}
    for number, value in fields(raw):
        groups.setdefault(number, []).append(value)
    if 1 in groups:
        obj["metadata"] = _meta(groups[1][0])
    if kind == "Namespace" and 2 in groups:
        finalizers = [_str(v) for n, v in fields(groups[2][0]) if n == 1]
        obj["spec"] = {"finalizers": finalizers} if finalizers else {}
    elif kind == "ConfigMap":
        if 2 in groups:
            obj["data"] = _map(groups[2])
        if 3 in groups:
            obj["binaryData"] = _map(groups[3], binary=True)
    elif kind == "Secret":
        if 2 in groups:
            obj["data"] = _map(groups[2], binary=True)
        if 3 in groups:
            obj["type"] = _str(groups[3][0])
        if 4 in groups:
            obj["stringData"] = _map(groups[4])
    elif kind == "SelfSubjectAccessReview" and 2 in groups:
        spec: dict[str, Any] = {}
        for number, value in fields(groups[2][0]):
            if number == 1:
                spec["resourceAttributes"] = _resource_attributes(value)
            elif number == 2:
                spec["nonResourceAttributes"] = _non_resource_attributes(value)
        obj["spec"] = spec
    return obj


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
                    api_version = _str(v)
                elif n == 2:
                    kind = _str(v)
        elif number == 2:
            raw = value
    obj = {"apiVersion": api_version, "kind": kind}
    obj.update(_body(kind, raw))
    return obj
