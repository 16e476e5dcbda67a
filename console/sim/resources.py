"""Requests on resources: CRUD, the patch kinds, server-side apply, lists, watches (served
by `console.sim.watch`), self reviews and pod logs - answered as the API server does."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from typing import Any

from aiohttp import web

from console.sim import admission, discovery, patch, tables, watch
from console.sim.api import ApiError, Target, dumps, not_found, read_body, reply
from console.sim.cluster import SimCluster
from console.sim.objects import now_iso
from console.sim.discovery import ResourceType
from console.sim.rbac import Principal, rules_review
from console.sim.store import Obj, SelectorError, clone, field_matcher, label_matcher


class Resources:
    """One resource request (CRUD, patch, apply, list, watch) on one cluster."""

    def __init__(self, cluster: SimCluster, principal: Principal, request: web.BaseRequest,
                 target: Target, verb: str) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.principal = principal
        self.request = request
        self.t = target
        self.verb = verb
        self.query = request.query
        self.dry_run = "All" in request.query.getall("dryRun", [])

    async def serve(self) -> web.StreamResponse:
        """Dispatch by verb and subresource."""
        t, verb = self.t, self.verb
        if t.rt.verbs == ("create",):
            if verb != "create":
                raise ApiError(405, "the server does not allow this method on the requested resource")
            return await self.review()
        if t.sub and verb not in ("get", "update", "patch") or (verb == "create" and t.name):
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if t.sub == "log":
            if verb != "get":
                raise ApiError(405, "the server does not allow this method on the requested resource")
            return self.log()
        if verb == "get":
            obj = self._get()
            if t.sub == "scale":
                return reply(self._scale(obj))
            return self._object_reply(obj)
        if verb == "list":
            return self.list()
        if verb == "watch":
            return await self.watch()
        if verb == "create":
            body, _ = await read_body(self.request)
            return self.create(body)
        if verb == "update":
            body, _ = await read_body(self.request)
            return self.update(body)
        if verb == "patch":
            return await self.patch()
        if verb == "delete":
            body, _ = await read_body(self.request)
            return self.delete(body if isinstance(body, dict) else None)
        if verb == "deletecollection":
            return self.delete_collection()
        raise ApiError(405, "the server does not allow this method on the requested resource")

    # --- helpers ------------------------------------------------------------------------

    def _get(self) -> Obj:
        obj = self.store.get(self.t.rt.key, self.t.namespace or "", self.t.name)
        if obj is None:
            raise not_found(self.t.rt, self.t.name)
        return obj

    def _object_reply(self, obj: Obj, code: int = 200) -> web.Response:
        if tables.wants_table(self.request.headers.get("Accept", "")):
            return reply(tables.table(self.t.rt, [obj], self.store.rv, self.query.get("includeObject") == "Object",
                                     self.cluster.clock.time()), code)
        return reply(obj, code)

    def _require_namespace(self) -> None:
        ns = self.t.namespace
        if self.t.rt.namespaced and ns and self.store.get("/namespaces", "", ns) is None:
            raise ApiError(404, f'namespaces "{ns}" not found',
                           details={"name": ns, "kind": "namespaces"})

    def _scale(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        selector = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                             "resourceVersion": meta["resourceVersion"],
                             "creationTimestamp": meta.get("creationTimestamp")},
                "spec": {"replicas": obj["spec"].get("replicas", 0)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in selector.items())}}

    def _check_object(self, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be an object")
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object")
        ns = self.t.namespace
        if self.t.rt.namespaced and meta.get("namespace") and ns and meta["namespace"] != ns:
            raise ApiError(400, "the namespace of the provided object does not match the namespace "
                                "sent on the request")
        kind = body.get("kind")
        if kind and kind != self.t.rt.kind and self.t.sub != "scale":
            raise ApiError(400, f"the object's kind {kind!r} does not match {self.t.rt.qualified} "
                                f"({self.t.rt.kind})")
        return body

    def _invalid(self, exc: admission.Invalid, name: str) -> ApiError:
        rt = self.t.rt
        kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
        causes = [{"reason": r, "message": m, "field": f} for f, r, m in exc.causes]
        message = f'{kind} "{name}" is invalid: ' + ", ".join(f"{f}: {m}" for f, _, m in exc.causes)
        return ApiError(422, message, "Invalid",
                        {"name": name, "group": rt.group, "kind": rt.kind, "causes": causes})

    def _store(self, obj: Obj) -> Obj:
        if self.dry_run:
            return obj
        return self.store.put(self.t.rt.key, obj)

    # --- create -------------------------------------------------------------------------

    def _decodable(self, obj: Obj) -> Obj:
        """`obj` if its fields have the types the API server decodes, else the 400."""
        try:
            admission.check_types(self.t.rt, obj)
        except admission.Undecodable as exc:
            raise ApiError(400, exc.json_message) from None
        return obj

    def create(self, body: Any, *, code: int = 201) -> web.Response:
        """POST: admit and store a new object."""
        obj = self._prepare_new(self._decodable(self._check_object(body)))
        return self._object_reply(self._store(obj), code)

    def _prepare_new(self, obj: Obj) -> Obj:
        rt, meta = self.t.rt, obj["metadata"]
        self._require_namespace()
        if rt.namespaced:
            meta["namespace"] = self.t.namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        name = meta.get("name", "")
        if self.store.get(rt.key, meta.get("namespace", ""), name) is not None:
            raise ApiError(409, f'{rt.qualified} "{name}" already exists', "AlreadyExists",
                           {"name": name, "group": rt.group, "kind": rt.name})
        for key in ("resourceVersion", "deletionTimestamp", "managedFields", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso(self.cluster.clock.time())
        meta["generation"] = 1
        if rt.kind in ("Deployment", "ReplicaSet", "Pod"):
            obj["status"] = {"phase": "Pending"} if rt.kind == "Pod" else {}
        admission.default(rt, obj)
        try:
            admission.validate(rt, obj, None)
        except admission.Invalid as exc:
            raise self._invalid(exc, name) from None
        return obj

    # --- update / patch -----------------------------------------------------------------

    def update(self, body: Any) -> web.Response:
        """PUT: replace the object (or its status or scale)."""
        current = self._get()
        obj = self._decodable(self._check_object(body))
        if self.t.sub == "scale":
            return self._update_scale(current, obj)
        return self._object_reply(self._store(self._merge_update(current, obj)))

    def _update_scale(self, current: Obj, scale: Obj) -> web.Response:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, f"Scale.autoscaling \"{self.t.name}\" is invalid: spec.replicas: "
                                f"Invalid value: {replicas!r}: must be greater than or equal to 0")
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise self._conflict()
        obj = clone(current)
        obj["spec"]["replicas"] = replicas
        self.t = Target(self.t.rt, self.t.namespace, self.t.name, "")
        stored = self._store(self._merge_update(current, obj))
        return reply(self._scale(stored))

    def _conflict(self) -> ApiError:
        rt = self.t.rt
        return ApiError(409, f'Operation cannot be fulfilled on {rt.qualified} "{self.t.name}": the object '
                             "has been modified; please apply your changes to the latest version and try again",
                        "Conflict", {"name": self.t.name, "group": rt.group, "kind": rt.name})

    def _merge_update(self, current: Obj, obj: Obj) -> Obj:
        """The object to store for an update of `current` to `obj` (main resource or status)."""
        rt = self.t.rt
        meta = obj.setdefault("metadata", {})
        if meta.get("name") not in (None, self.t.name):
            raise ApiError(400, f'the name of the object ({meta.get("name")}) does not match the name on '
                                f'the URL ({self.t.name})')
        rv = meta.get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise self._conflict()
        if self.t.sub == "status":
            fresh = clone(current)
            fresh["status"] = obj.get("status") or {}
            return fresh
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        cmeta = current["metadata"]
        for key in ("uid", "creationTimestamp", "namespace", "generation", "deletionTimestamp"):
            if key in cmeta:
                meta[key] = cmeta[key]
        meta["name"] = self.t.name
        meta.pop("managedFields", None)
        if rt.kind in ("Deployment", "ReplicaSet", "Pod", "Namespace", "Node"):
            obj["status"] = current.get("status", {})
        admission.default(rt, obj)
        try:
            admission.validate(rt, obj, current)
        except admission.Invalid as exc:
            raise self._invalid(exc, self.t.name) from None
        if admission.spec_of(rt, obj) != admission.spec_of(rt, current):
            meta["generation"] = cmeta.get("generation", 1) + 1
        return obj

    async def patch(self) -> web.Response:
        """PATCH: JSON, merge, strategic merge or server-side apply."""
        body, ctype = await read_body(self.request)
        rt = self.t.rt
        if ctype == "application/apply-patch+yaml":
            return self._apply(body)
        current = self._get()
        base = self._scale(current) if self.t.sub == "scale" else current
        try:
            if ctype == "application/json-patch+json":
                patched = patch.json_patch(base, body)
            elif ctype == "application/merge-patch+json":
                patched = patch.merge_patch(base, body)
            elif ctype == "application/strategic-merge-patch+json":
                patched = patch.strategic_merge(base, body)
            else:
                raise ApiError(415, 'the body of the request was in an unknown format - accepted media '
                                    'types include: application/json-patch+json, application/merge-patch+json, '
                                    'application/apply-patch+yaml, application/strategic-merge-patch+json')
        except patch.PatchError as exc:
            raise ApiError(exc.code, str(exc)) from None
        if not isinstance(patched, dict):
            raise ApiError(400, "the patch did not produce an object")
        if self.t.sub == "scale":
            return self._update_scale(current, patched)
        if self.t.sub != "status" and rt.kind in ("Deployment", "ReplicaSet", "Pod"):
            patched["status"] = current.get("status", {})
        return self._object_reply(self._store(self._merge_update(current, patched)))

    def _apply(self, body: Any) -> web.Response:
        applied = self._check_object(body)
        manager = self.query.get("fieldManager")
        if not manager:
            raise ApiError(400, "PATCH requests with apply content type must specify a fieldManager")
        if not applied["metadata"].get("name"):
            applied["metadata"]["name"] = self.t.name
        try:
            admission.check_types(self.t.rt, {**applied, "metadata": {
                **applied["metadata"], "namespace": self.t.namespace or ""}})
        except admission.Undecodable as exc:
            # A plain error inside the apply handler: the API server answers 500, no reason.
            raise ApiError(500, exc.apply_message, "") from None
        key = (self.t.rt.key, self.t.namespace or "", self.t.name, manager)
        current = self.store.get(self.t.rt.key, self.t.namespace or "", self.t.name)
        pristine = clone(applied)
        pristine["metadata"].pop("resourceVersion", None)
        if current is None:
            if not self.principal.allowed("create", self.t.rt.group, self.t.rt.name, self.t.namespace or ""):
                raise ApiError(403, f'{self.t.rt.qualified} "{self.t.name}" is forbidden: User '
                                    f'"{self.principal.username}" cannot create resource "{self.t.rt.name}"')
            response = self.create(clone(applied))
        else:
            previous = self.cluster.applied.get(key)
            merged = patch.apply(current, applied, previous)
            if self.t.sub != "status" and self.t.rt.kind in ("Deployment", "ReplicaSet", "Pod"):
                merged["status"] = current.get("status", {})
            if not applied["metadata"].get("resourceVersion"):
                merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            response = self._object_reply(self._store(self._merge_update(current, merged)))
        if not self.dry_run:
            self.cluster.applied[key] = pristine
        return response

    # --- delete -------------------------------------------------------------------------

    def delete(self, body: Obj | None) -> web.Response:
        """DELETE one object, its dependents (background propagation) and, for a namespace, its contents."""
        obj = self._get()
        pre = (body or {}).get("preconditions") or {}
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise self._conflict()
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise self._conflict()
        orphan = (body or {}).get("propagationPolicy") == "Orphan" or self.query.get("propagationPolicy") == "Orphan"
        if not self.dry_run:
            self._delete_obj(self.t.rt, obj, orphan)
        meta = obj["metadata"]
        return reply({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                      "details": {"name": meta["name"], "group": self.t.rt.group, "kind": self.t.rt.name,
                                  "uid": meta["uid"]}})

    def _delete_obj(self, rt: ResourceType, obj: Obj, orphan: bool = False) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        if rt.kind == "Namespace":
            for other in discovery.RESOURCES:
                if other.namespaced:
                    for item in self.store.list(other.key, meta["name"]):
                        self.store.delete(other.key, meta["name"], item["metadata"]["name"])
            for k in [k for k in self.cluster.applied if k[1] == meta["name"]]:
                del self.cluster.applied[k]
        self.store.delete(rt.key, ns, meta["name"])
        for k in [k for k in self.cluster.applied if k[:3] == (rt.key, ns, meta["name"])]:
            del self.cluster.applied[k]
        if orphan:
            return
        uid = meta["uid"]
        for other in discovery.RESOURCES:
            for item in self.store.list(other.key, ns if other.namespaced else None):
                refs = item["metadata"].get("ownerReferences") or ()
                if any(r.get("uid") == uid for r in refs):
                    self._delete_obj(other, item)

    def delete_collection(self) -> web.Response:
        """DELETE on a collection: every object matching the selectors."""
        items = self._select()
        if not self.dry_run:
            for item in items:
                self._delete_obj(self.t.rt, item)
        return reply({"kind": f"{self.t.rt.kind}List", "apiVersion": self.t.rt.api_version,
                      "metadata": {"resourceVersion": str(self.store.rv)}, "items": items})

    # --- list / watch -------------------------------------------------------------------

    def _matchers(self) -> tuple[Any, Any]:
        try:
            labels = label_matcher(self.query.get("labelSelector"))
            fields, _ = field_matcher(self.query.get("fieldSelector"))
        except SelectorError as exc:
            raise ApiError(400, str(exc)) from None
        return labels, fields

    def _select(self) -> list[Obj]:
        labels, fields = self._matchers()
        return [o for o in self.store.list(self.t.rt.key, self.t.namespace)
                if labels(o["metadata"].get("labels") or {}) and fields(o)]

    def list(self) -> web.Response:
        """GET on a collection, with selectors, limit and continue."""
        items = self._select()
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        start = 0
        token = self.query.get("continue")
        if token:
            try:
                start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid") from None
        try:
            limit = int(self.query.get("limit") or 0)
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        page = items[start:start + limit] if limit > 0 else items[start:]
        if limit > 0 and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(dumps({"start": start + limit})).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        if tables.wants_table(self.request.headers.get("Accept", "")):
            out = tables.table(self.t.rt, page, self.store.rv, self.query.get("includeObject") == "Object",
                               self.cluster.clock.time())
            out["metadata"].update({k: v for k, v in meta.items() if k != "resourceVersion"})
            return reply(out)
        return reply({"kind": f"{self.t.rt.kind}List", "apiVersion": self.t.rt.api_version,
                      "metadata": meta, "items": page})

    async def watch(self) -> web.StreamResponse:
        """A watch stream: chunked JSON lines, flushed per event (see `console.sim.watch`)."""
        labels, fields = self._matchers()

        def match(obj: Obj) -> bool:
            return labels(obj["metadata"].get("labels") or {}) and fields(obj)
        return await watch.serve(self.request, self.store, self.t.rt, self.t.namespace,
                                 self.query, match, self.cluster.settings.bookmark_interval)

    # --- reviews and logs ---------------------------------------------------------------

    async def review(self) -> web.Response:
        """selfsubjectaccessreviews, selfsubjectrulesreviews and selfsubjectreviews."""
        body, _ = await read_body(self.request)
        body = body if isinstance(body, dict) else {}
        rt = self.t.rt
        out: Obj = {"kind": rt.kind, "apiVersion": rt.api_version,
                    "metadata": {"creationTimestamp": None}}
        if rt.kind == "SelfSubjectReview":
            out["status"] = {"userInfo": {"username": self.principal.username,
                                          "groups": list(self.principal.groups)}}
            return reply(out, 201)
        spec = body.get("spec") or {}
        if rt.kind == "SelfSubjectRulesReview":
            namespace = spec.get("namespace") if isinstance(spec, dict) else None
            if not namespace:
                raise ApiError(400, "no namespace on request")
            out["spec"] = {}   # as kube-apiserver answers: the namespace is not echoed
            out["status"] = rules_review(self.principal, str(namespace))
            return reply(out, 201)
        attrs = spec.get("resourceAttributes")
        if attrs:
            resource = attrs.get("resource", "")
            if attrs.get("subresource"):
                resource = f"{resource}/{attrs['subresource']}"
            allowed = self.principal.allowed(attrs.get("verb", ""), attrs.get("group", ""), resource,
                                             attrs.get("namespace", ""), attrs.get("name", ""))
        else:
            allowed = self.principal.rules is None
        out["spec"] = spec
        # RBAC gives no reason for a denial (kubectl prints a bare "no"); an allow names the rule.
        out["status"] = {"allowed": allowed}
        if allowed:
            out["status"]["reason"] = "allowed by a rule of this token (release-console sim)"
        return reply(out, 201)

    def log(self) -> web.Response:
        """pods/log: a few plausible lines."""
        pod = self._get()
        lines = [f"{now_iso(self.cluster.clock.time())} starting {c.get('name')} image={c.get('image')}"
                 for c in pod["spec"].get("containers") or ()]
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            if cs.get("ready"):
                lines.append(f"{now_iso(self.cluster.clock.time())} {cs['name']} ready")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
