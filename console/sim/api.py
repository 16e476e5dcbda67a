"""The vocabulary of the simulator's HTTP surface: `Status` errors, JSON replies, request
bodies, and what a resource URL addresses (`Target`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from console.sim import discovery, protobuf
from console.sim.discovery import ResourceType
from console.sim.store import Obj

JSON = "application/json"
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
            415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError"}


class ApiError(Exception):
    """Answered as a `Status` object."""

    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason if reason is not None else _REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        """The Status object."""
        out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": self.message, "reason": self.reason, "code": self.code}
        if not self.reason:   # omitempty: a plain error inside a handler has no reason
            del out["reason"]
        if self.details:
            out["details"] = self.details
        return out


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def reply(obj: Any, code: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response."""
    return web.Response(body=dumps(obj), status=code, content_type=JSON, headers=headers)


def error_reply(err: ApiError) -> web.Response:
    """A `Status` response for `err`."""
    return reply(err.status(), err.code, err.headers)


def not_found(rt: ResourceType, name: str) -> ApiError:
    """The 404 for a missing object, worded as the API server words it."""
    return ApiError(404, f'{rt.qualified} "{name}" not found',
                    details={"name": name, "group": rt.group, "kind": rt.name})


@dataclass(frozen=True)
class Target:
    """What a resource request addresses."""

    rt: ResourceType
    namespace: str | None  # None: all namespaces (or cluster-scoped)
    name: str
    sub: str

    @property
    def rbac_resource(self) -> str:
        """`deployments` or `deployments/scale`."""
        return f"{self.rt.name}/{self.sub}" if self.sub else self.rt.name


def parse_target(path: str) -> Target | None:
    """Map /api/v1/... or /apis/g/v/... to a Target (None when no resource is addressed)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and discovery.lookup(group, version, rest[2]):
        namespace, rest = rest[1], rest[2:]
    rt = discovery.lookup(group, version, rest[0])
    if rt is None or len(rest) > 3:
        raise ApiError(404, "the server could not find the requested resource")
    if rt.namespaced and namespace is None and len(rest) > 1:
        raise ApiError(404, "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in rt.subresources:
        raise ApiError(404, "the server could not find the requested resource")
    return Target(rt, namespace if rt.namespaced else None, name, sub)


def verb_of(method: str, target: Target, query: Any) -> str:
    """The API verb of a request."""
    if method == "GET":
        if target.name:
            return "get"
        return "watch" if query.get("watch") in ("true", "1") else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if target.name else "deletecollection"}.get(method, method.lower())


async def read_body(request: web.BaseRequest) -> tuple[Any, str]:
    """The decoded request body and its content type."""
    raw = await request.read()
    ctype = request.headers.get("Content-Type", JSON).split(";")[0].strip().lower() or JSON
    if not raw:
        return None, ctype
    try:
        if ctype == "application/vnd.kubernetes.protobuf":
            return protobuf.decode(raw), ctype
        if ctype in ("application/yaml", "application/apply-patch+yaml"):
            if raw.lstrip()[:1] == b"{":  # kubectl and the Python client send JSON: parse it fast
                try:
                    return json.loads(raw), ctype
                except ValueError:
                    pass
            return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)), ctype
        return json.loads(raw), ctype
    except protobuf.ProtobufError as exc:
        raise ApiError(415, f"the body of the request could not be decoded: {exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise ApiError(400, f"the request body could not be decoded ({ctype}): {exc}") from None
