"""The HTTP entry of a simulated cluster: routing, authentication, authorization, injected
faults, discovery, OpenAPI and the admin endpoint; resource requests go on to `resources.py`.

One aiohttp low-level server handles every cluster of a fleet; the cluster is the one whose
port accepted the connection. Every error is a `Status` object.
"""

from __future__ import annotations

import asyncio
import json
import weakref

from aiohttp import web

from console.sim import discovery, openapi
from console.sim.metrics import APP_METRICS, app_metrics
from console.sim.api import JSON, ApiError, error_reply, parse_target, reply, verb_of
from console.sim.cluster import SimCluster
from console.sim.faults import runs_matching
from console.sim.rbac import ANONYMOUS, Principal
from console.sim.resources import Resources

_PUBLIC = ("/version", "/version/", "/healthz", "/readyz", "/livez")


class Handler:
    """Serves the requests of one fleet (the cluster is chosen by local port)."""

    def __init__(self, clusters_by_port: dict[int, SimCluster]) -> None:
        self.by_port = clusters_by_port
        # The connections that served a request already (kept alive): `drop_reused`.
        self._served: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport else None
        cluster = self.by_port.get(sockname[1]) if sockname else None
        if cluster is None or not cluster.alive:
            if transport is not None:
                transport.abort()
            raise web.HTTPServiceUnavailable()
        if transport is not None:
            if cluster.settings.drop_reused > 0 and transport in self._served:
                # The idle timeout's race: the connection closed as the request came in,
                # before anything of it was served (reset: nothing answered).
                cluster.settings.drop_reused -= 1
                cluster.counters["dropped_requests"] += 1
                transport.abort()
                raise web.HTTPServiceUnavailable()
            self._served.add(transport)
        try:
            return await self._handle(cluster, request)
        except ApiError as err:
            return error_reply(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a simulator bug: answer as the API server would, loudly
            return error_reply(ApiError(500, f"Internal error occurred: {type(exc).__name__}: {exc}"))

    # --- authentication -------------------------------------------------------------------

    def _principal(self, cluster: SimCluster, request: web.BaseRequest) -> Principal:
        header = request.headers.get("Authorization", "")
        if not header:
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        found = cluster.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise ApiError(401, "Unauthorized")
        return found

    async def _handle(self, cluster: SimCluster, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        principal = self._principal(cluster, request)
        if path == APP_METRICS:
            # The app's own metrics, as a Prometheus would scrape them (no token).
            return web.Response(text=app_metrics(cluster), content_type="text/plain")
        if path in _PUBLIC:
            cluster.count("get", path.strip("/"))
            if path.startswith("/version"):
                return reply(discovery.VERSION_INFO)
            return web.Response(text="ok", content_type="text/plain")
        if principal is ANONYMOUS:
            raise ApiError(403, f'forbidden: User "system:anonymous" cannot {request.method.lower()} path "{path}"')
        if path.startswith("/_sim/"):
            return await self._admin(cluster, principal, request)
        target = parse_target(path)
        if target is None:
            cluster.count("get", "discovery")
            return self._non_resource(path)
        verb = verb_of(request.method, target, request.query)
        cluster.count(verb, target.rbac_resource, "All" in request.query.getall("dryRun", []))
        dice = cluster.fault_rng(request.method, path)
        if cluster.settings.random_faults:
            cluster.counters["random_faults"] += 1
        delay = cluster.settings.pick_latency(dice)
        if delay > 0:
            await asyncio.sleep(delay)   # the network's time: real even on a ManualClock
        code = cluster.settings.pick_error(dice)
        if code is not None:
            cluster.counters["injected_errors"] += 1
            if code == 429:
                after = str(cluster.settings.retry_after)
                raise ApiError(429, "Too many requests, please try again later.",
                               details={"retryAfterSeconds": cluster.settings.retry_after},
                               headers={"Retry-After": after})
            raise ApiError(code, "Internal error occurred: injected fault (release-console sim)")
        ns = target.namespace or ""
        if target.rt.name == "selfsubjectreviews" and not cluster.settings.self_review:
            raise ApiError(404, "the server could not find the requested resource")
        # Every authenticated user may ask what it may do (system:basic-user in a real cluster).
        self_review = target.rt.group in ("authorization.k8s.io", "authentication.k8s.io")
        if not self_review and not principal.allowed(verb, target.rt.group, target.rbac_resource, ns,
                                                     target.name):
            scope = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            group = f'"{target.rt.group}"' if target.rt.group else '""'
            what = f'{target.rt.qualified} "{target.name}"' if target.name else target.rt.qualified
            raise ApiError(403, f'{what} is forbidden: User "{principal.username}" cannot {verb} '
                                f'resource "{target.rbac_resource}" in API group {group}{scope}',
                           details={"name": target.name, "group": target.rt.group, "kind": target.rt.name})
        answer = await Resources(cluster, principal, request, target, verb).serve()
        if cluster.settings.bad_answer and request.method in ("POST", "PUT", "PATCH") \
                and "dryRun" not in request.query:   # a dry run stores nothing
            return _bad_answer(cluster, answer)
        return answer

    def _non_resource(self, path: str) -> web.Response:
        p = path.rstrip("/")
        if p == "/api":
            return reply(discovery.api_versions())
        if p == "/apis":
            return reply(discovery.api_group_list())
        parts = [x for x in p.split("/") if x]
        if len(parts) == 2 and parts[0] == "api":
            found = discovery.resource_list("", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            found = discovery.api_group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            found = discovery.resource_list(parts[1], parts[2])
        elif p == "/openapi/v3":
            return web.Response(body=openapi.index(), content_type=JSON)
        elif p.startswith("/openapi/v3/"):
            doc = openapi.lookup(p[len("/openapi/v3/"):])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource")
            return web.Response(body=doc, content_type=JSON)
        else:
            found = None
        if found is None:
            raise ApiError(404, "the server could not find the requested resource")
        return reply(found)

    async def _admin(self, cluster: SimCluster, principal: Principal,
                     request: web.BaseRequest) -> web.Response:
        if principal.rules is not None:
            raise ApiError(403, "the simulator's admin endpoint needs the full-rights token")
        if request.path == "/_sim/faults" and request.method == "POST":
            try:
                cluster.settings.update(json.loads(await request.read() or b"{}"))
            except (TypeError, ValueError) as exc:
                raise ApiError(400, str(exc)) from None
            cluster.sync_nodes()
            return reply({"ok": True})
        if request.path == "/_sim/counters":
            return reply(cluster.counter_summary())
        raise ApiError(404, "the server could not find the requested resource")


def _bad_answer(cluster: SimCluster, answer: web.StreamResponse) -> web.StreamResponse:
    """The `bad_answer` fault: the write is done, its answer replaced by a 200 whose body
    is `bad_answer_body` when the stored object runs a matching tag."""
    body = getattr(answer, "body", None)
    if not isinstance(body, bytes) or not 200 <= answer.status <= 299:
        return answer
    try:
        stored = json.loads(body)
    except ValueError:
        return answer
    if not runs_matching(stored, cluster.settings.bad_answer):
        return answer
    cluster.counters["injected_errors"] += 1
    return web.Response(status=200, text=cluster.settings.bad_answer_body,
                        content_type="text/html")
