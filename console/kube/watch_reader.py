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

from console.kube.client import KubeClient
from console.kube.watch_feed import WatchFeed


class WatchReader(WatchFeed, threading.Thread):
    """Forwards one watch's events to a queue (what `WatchFeed` puts).

    Starts from `resource_version` (or lists first when None), resumes from the last
    version seen (bookmarks included) when the server ends the stream, re-lists on 410,
    and backs off on errors until stopped.
    """

    def __init__(self, client: KubeClient, path: str, query: Mapping[str, str], source: str,
                 out: queue.Queue, resource_version: str | None, server_timeout: int) -> None:
        threading.Thread.__init__(self, name=f"watch-{client.cluster}-{source}", daemon=True)
        WatchFeed.__init__(self, client, path, query, source, out, resource_version,
                           server_timeout)
        self._stopped = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()

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
                self._list_if_unknown()
                self._watch_once()
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - any failure of the stream is reported
                if self._stopped.is_set():
                    return
                self._report(exc)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _watch_once(self) -> None:
        stream = self.client.watch(self.path, self._watch_query(), self.server_timeout)
        self._recovered()
        with self._lock:
            self._stream = stream
            if self._stopped.is_set():
                stream.close()
                return
        try:
            for kind, obj in stream.events():
                if not self._take(kind, obj):
                    return
        finally:
            with self._lock:
                self._stream = None
            stream.close()
