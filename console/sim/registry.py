"""A demo OCI registry endpoint: every tag exists except those matching `registry_missing`.

It answers as CNCF distribution does for a pushed OCI image: `GET /v2/` 200;
`HEAD`/`GET /v2/<name>/manifests/<tag|digest>` with `Docker-Content-Digest` and the OCI
manifest media type when Accept names it (a Docker schema 2 manifest when only that is
accepted; otherwise 404 MANIFEST_UNKNOWN, as distribution does); `GET
/v2/<name>/blobs/<digest>` for the config blob; 404 with the OCI error JSON for missing tags.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable

from aiohttp import web

from console.sim.faults import matches

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_MANIFEST_RE = re.compile(r"^/v2/(?P<name>[a-z0-9][a-z0-9._/-]*)/manifests/(?P<ref>[^/]+)$")
_BLOB_RE = re.compile(r"^/v2/(?P<name>[a-z0-9][a-z0-9._/-]*)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_TAGS_RE = re.compile(r"^/v2/(?P<name>[a-z0-9][a-z0-9._/-]*)/tags/list$")
_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(code: str, message: str, detail: object, status: int, head: bool) -> web.Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()
    return web.Response(status=status, body=None if head else body, content_type="application/json",
                        headers=_HEADERS)


class DemoRegistry:
    """The request handler of the demo registry (runs on the fleet's loop)."""

    def __init__(self, missing: Callable[[], Iterable[str]]) -> None:
        self.missing = missing
        self.blobs: dict[str, tuple[str, bytes]] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.tags: dict[str, set[str]] = {}
        self.counters: Counter[str] = Counter()

    def _manifest(self, name: str, tag: str, docker: bool) -> tuple[str, bytes]:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "config": {"Labels": {"org.opencontainers.image.version": tag,
                                                   "org.opencontainers.image.title": name}},
                             "rootfs": {"type": "layers", "diff_ids": []}}, sort_keys=True).encode()
        config_type, layer_type, media = ((DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST) if docker
                                          else (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST))
        self.blobs[_digest(config)] = (config_type, config)
        layer = _digest(f"{name}:{tag}:layer".encode())
        manifest = json.dumps({"schemaVersion": 2, "mediaType": media,
                               "config": {"mediaType": config_type, "digest": _digest(config),
                                          "size": len(config)},
                               "layers": [{"mediaType": layer_type, "digest": layer, "size": 2048}]},
                              indent=3).encode()
        self.manifests[_digest(manifest)] = (media, manifest)
        return media, manifest

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        head = request.method == "HEAD"
        kind = next((k for k in ("manifests", "blobs", "tags") if f"/{k}/" in request.path), "base")
        self.counters[f"{request.method} {kind}"] += 1
        if request.method not in ("GET", "HEAD"):
            return _error("UNSUPPORTED", "The operation is unsupported.", None, 405, head)
        path = request.path
        if path in ("/v2", "/v2/"):
            return web.Response(body=None if head else b"{}", content_type="application/json",
                                headers=_HEADERS)
        m = _MANIFEST_RE.match(path)
        if m:
            return self._serve_manifest(m["name"], m["ref"], request.headers.get("Accept", ""), head)
        m = _BLOB_RE.match(path)
        if m:
            found = self.blobs.get(m["digest"])
            if found is None:
                return _error("BLOB_UNKNOWN", "blob unknown to registry", m["digest"], 404, head)
            return web.Response(body=None if head else found[1], content_type=found[0],
                                headers={**_HEADERS, "Docker-Content-Digest": m["digest"],
                                         "Content-Length": str(len(found[1]))})
        m = _TAGS_RE.match(path)
        if m:
            body = json.dumps({"name": m["name"], "tags": sorted(self.tags.get(m["name"], ()))}).encode()
            return web.Response(body=None if head else body, content_type="application/json",
                                headers=_HEADERS)
        return _error("NAME_UNKNOWN", "repository name not known to registry", {"path": path}, 404, head)

    def _serve_manifest(self, name: str, ref: str, accept: str, head: bool) -> web.Response:
        accepted = {part.split(";")[0].strip() for part in accept.split(",")}
        if ref.startswith("sha256:"):
            found = self.manifests.get(ref)
            if found is None:
                return _error("MANIFEST_UNKNOWN", "manifest unknown", {"Digest": ref}, 404, head)
            media, body = found
        else:
            if matches(ref, tuple(self.missing())):
                return _error("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": ref}, 404, head)
            if OCI_MANIFEST in accepted:
                media, body = self._manifest(name, ref, docker=False)
            elif DOCKER_MANIFEST in accepted:
                media, body = self._manifest(name, ref, docker=True)
            else:
                return _error("MANIFEST_UNKNOWN",
                              "OCI manifest found, but accept header does not support OCI manifests",
                              None, 404, head)
            self.tags.setdefault(name, set()).add(ref)
        headers = {**_HEADERS, "Docker-Content-Digest": _digest(body), "Etag": f'"{_digest(body)}"',
                   "Content-Length": str(len(body))}
        resp = web.Response(body=None if head else body, headers=headers)
        resp.content_type = media
        return resp
