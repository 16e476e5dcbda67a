"""Watches as the API server serves them: the initial events (or those since a
resourceVersion, 410 Gone when compacted away), bookmarks (the initial-events-end one
and one per bookmark interval), then every change as one chunked JSON line, until
timeoutSeconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from aiohttp import web

from console.sim.api import JSON, ApiError, dumps
from console.sim.discovery import ResourceType
from console.sim.store import Gone, Obj, Store, Watcher


async def serve(request: web.BaseRequest, store: Store, rt: ResourceType, ns: str | None,
                query: Mapping[str, str], match: Callable[[Obj], bool],
                bookmark_interval: float) -> web.StreamResponse:
    """Serve one watch of `rt` objects in `ns` (None: all) that `match`."""
    rv_param = query.get("resourceVersion") or ""
    initial_events = query.get("sendInitialEvents") == "true"
    bookmarks = query.get("allowWatchBookmarks") == "true"
    try:
        timeout = float(query.get("timeoutSeconds") or 1800)
    except ValueError:
        raise ApiError(400, "timeoutSeconds must be a number") from None
    watcher = store.watch(rt.key, ns, match)
    try:
        return await _stream(request, store, rt, ns, watcher, match, rv_param,
                             initial_events, bookmarks, timeout, bookmark_interval)
    except ConnectionResetError:  # the client went away
        return web.Response(status=499)
    finally:
        store.unwatch(watcher)


async def _stream(request: web.BaseRequest, store: Store, rt: ResourceType, ns: str | None,
                  watcher: Watcher, match: Callable[[Obj], bool], rv_param: str,
                  initial_events: bool, bookmarks: bool, timeout: float,
                  interval: float) -> web.StreamResponse:
    key = rt.key
    first: list[tuple[str, Obj]] = []
    gone = ""
    if initial_events or rv_param in ("", "0"):
        first = [("ADDED", o) for o in store.list(key, ns) if match(o)]
    else:
        try:
            since = store.since(key, int(rv_param))
        except ValueError:
            raise ApiError(400, f"invalid resource version {rv_param!r}") from None
        except Gone as exc:
            gone = str(exc)
            since = []
        first = [(e, o) for e, o in since
                 if (ns is None or o["metadata"].get("namespace") == ns) and match(o)]
    resp = web.StreamResponse(headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if gone:
        err = ApiError(410, gone, "Expired")
        await resp.write(dumps({"type": "ERROR", "object": err.status()}) + b"\n")
        return resp
    # Every write is a TLS record and a send(2): what is ready goes in one.
    lines = [dumps({"type": etype, "object": obj}) + b"\n" for etype, obj in first]
    if initial_events and bookmarks:
        mark = {"kind": rt.kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(store.rv),
                             "annotations": {"k8s.io/initial-events-end": "true"}}}
        lines.append(dumps({"type": "BOOKMARK", "object": mark}) + b"\n")
    if lines:
        await resp.write(b"".join(lines))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_bookmark = loop.time() + interval
    while True:
        now = loop.time()
        if now >= deadline:
            break
        if bookmarks and now >= next_bookmark:
            # as the API server does about once a minute: the client's resourceVersion stays
            # fresh, so a re-watch does not run into 410 Gone
            mark = {"kind": rt.kind, "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(store.rv)}}
            await resp.write(dumps({"type": "BOOKMARK", "object": mark}) + b"\n")
            next_bookmark = now + interval
        wait = min(deadline, next_bookmark if bookmarks else deadline) - now
        queue = watcher.queue
        if queue.empty():
            try:
                item = await asyncio.wait_for(queue.get(), wait)
            except asyncio.TimeoutError:
                continue
        else:
            item = queue.get_nowait()
        # The changes of one controller pass arrive together: one write for all that
        # wait (a change is still sent as soon as it is made).
        lines = []
        while item is not None:
            lines.append(dumps({"type": item[0], "object": item[1]}) + b"\n")
            if queue.empty():
                break
            item = queue.get_nowait()
        if lines:
            await resp.write(b"".join(lines))
        if item is None:  # the cluster died: drop the connection
            if request.transport is not None:
                request.transport.abort()
            return resp
    await resp.write_eof()
    return resp
