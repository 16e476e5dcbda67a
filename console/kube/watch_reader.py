"""`WatchReader`: one watch read by a small thread that only forwards its events to a
queue (the control channel and follow mode use it for a release's Lease; a rollout's
watches are read by the process's one hub thread instead, `console.kube.watch_hub`).

It resumes from the last resourceVersion when the server ends the stream, re-lists after
410 Gone, backs off on errors, and tells the deciding thread when the cluster answers
again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

from console.kube.client import ClusterError, KubeClient, describe


# The event type put before a re-list's objects: whoever keeps the objects starts over.
RELISTED = "RELISTED"


class WatchReader(threading.Thread):
    """Forwards one watch's events to a queue: (source, type, object), ("error", source,
    exc) when the stream fails, and ("recovered", source, None) once it works again; a
    list is preceded by (source, RELISTED, None).

    Starts from `resource_version` (or lists first when None), resumes from the last
    version seen (bookmarks included) when the server ends the stream, re-lists on 410,
    and backs off on errors until stopped.
    """

    def __init__(self, client: KubeClient, path: str, query: Mapping[str, str], source: str,
                 out: queue.Queue, resource_version: str | None, server_timeout: int) -> None:
        super().__init__(name=f"watch-{client.cluster}-{source}", daemon=True)
        self.client = client
        self.path = path
        self.query = dict(query)
        self.source = source
        self.out = out
        self.resource_version = resource_version
        self.server_timeout = server_timeout
        self._stopped = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()
        self._failing = False   # the last attempt failed; tell the decider when one works

    def stop(self) -> None:
        """End the watch now (from the deciding thread)."""
        self._stopped.set()
        with self._lock:
            if self._stream is not None:
                self._stream.close()

    def run(self) -> None:  # noqa: D102 - Thread API
        backoff = 0.5
        while not self._stopped.is_set():
            try:
                if self.resource_version is None:
                    listing = self.client.request("GET", self.path, self.query)
                    self._recovered()
                    self.resource_version = (listing.get("metadata") or {}).get("resourceVersion")
                    self.out.put((self.source, RELISTED, None))
                    for obj in listing.get("items") or []:
                        self.out.put((self.source, "ADDED", obj))
                self._watch_once()
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - any failure of the stream is reported
                if self._stopped.is_set():
                    return
                self._failing = True
                self.out.put(("error", self.source, describe(self.client.cluster, exc,
                                                             self.client.server)))
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _recovered(self) -> None:
        """Tell the deciding thread the cluster answers again (a quiet watch sends nothing)."""
        if self._failing:
            self._failing = False
            self.out.put(("recovered", self.source, None))

    def _watch_once(self) -> None:
        stream = self.client.watch(self.path, dict(self.query, resourceVersion=self.resource_version,
                                                   allowWatchBookmarks=True),
                                   self.server_timeout)
        self._recovered()
        with self._lock:
            self._stream = stream
            if self._stopped.is_set():
                stream.close()
                return
        try:
            for kind, obj in stream.events():
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        self.resource_version = None  # expired: list again
                        return
                    raise ClusterError(self.client.cluster,
                                       f"watch error {obj.get('code')}: {obj.get('message', '')}",
                                       obj.get("code"))
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self.resource_version = version
                if kind != "BOOKMARK":
                    self.out.put((self.source, kind, obj))
        finally:
            with self._lock:
                self._stream = None
            stream.close()
