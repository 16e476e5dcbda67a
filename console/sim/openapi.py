"""A minimal OpenAPI v3 surface: enough for `kubectl apply --server-side`.

kubectl reads `/openapi/v3` (the index of group-versions) and then the group-version document
to see whether the PATCH operation of the object's GroupVersionKind accepts the
`fieldValidation` query parameter. Each document lists, per resource, one item path with
`get`/`put`/`patch`/`delete` operations carrying `x-kubernetes-group-version-kind`, and an
object schema per kind.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from console.sim.discovery import BY_GV, ResourceType


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(rt: ResourceType) -> str:
    group = rt.group.split(".")[0] if rt.group else "core"
    return f"io.k8s.api.{group}.{rt.version}.{rt.kind}"


def _params(*extra: str) -> list[dict[str, Any]]:
    out = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    for name in extra:
        out.append({"name": name, "in": "query", "schema": {"type": "string"},
                    "description": name, "uniqueItems": True})
    return out


@cache
def document(group: str, version: str) -> bytes | None:
    """The OpenAPI v3 document of one group-version (JSON bytes), or None when not served."""
    types = BY_GV.get((group, version))
    if types is None:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in types.values():
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        ref = {"$ref": f"#/components/schemas/{_schema_name(rt)}"}
        body = {"content": {"application/json": {"schema": ref}}}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        scope = "namespaces/{namespace}/" if rt.namespaced else ""
        item = f"/{_gv_path(group, version)}/{scope}{rt.name}/{{name}}"
        ops: dict[str, Any] = {}
        for verb, method, extra in (
                ("get", "get", ()),
                ("put", "update", ("dryRun", "fieldManager", "fieldValidation")),
                ("patch", "patch", ("dryRun", "fieldManager", "fieldValidation", "force")),
                ("delete", "delete", ("dryRun",))):
            op: dict[str, Any] = {"operationId": f"{method}{rt.kind}", "parameters": _params(*extra),
                                  "responses": ok, "x-kubernetes-action": method,
                                  "x-kubernetes-group-version-kind": gvk}
            if verb in ("put", "patch"):
                op["requestBody"] = body
            ops[verb] = op
        paths[item] = ops
        schemas[_schema_name(rt)] = {
            "type": "object", "description": rt.kind,
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"type": "object"}, "spec": {"type": "object"},
                           "status": {"type": "object"}},
            "x-kubernetes-group-version-kind": [gvk]}
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes (release-console sim)",
                                         "version": "v1.32.4"},
           "paths": paths, "components": {"schemas": schemas}}
    return json.dumps(doc).encode()


@cache
def index() -> bytes:
    """GET /openapi/v3: each group-version with its document's hash."""
    paths = {}
    for group, version in BY_GV:
        doc = document(group, version) or b""
        digest = hashlib.sha512(doc).hexdigest()[:32].upper()
        gv = _gv_path(group, version)
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return json.dumps({"paths": paths}).encode()


def lookup(path: str) -> bytes | None:
    """The document at /openapi/v3/<path>, or None."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        return document("", parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return document(parts[1], parts[2])
    return None
