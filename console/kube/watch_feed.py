"""`WatchFeed`: what the two watch readers share - the watch they keep (client, path,
query, last resourceVersion), the queue they feed, and how a listing, an event, a
failure and a recovery become the (source, type, object) tuples put on it.

`console.kube.watch_reader.WatchReader` reads its watch on a thread of its own;
`console.kube.watch_hub.HubWatch` hands its stream to the process's one hub thread.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping
from typing import Any

from console.kube.client import ClusterError, describe

# The event type put before a re-list's objects: whoever keeps the objects starts over.
RELISTED = "RELISTED"


class WatchFeed:
    """One watch and the queue its events go to: (source, type, object) per event, a
    list preceded by (source, RELISTED, None), ("error", source, ClusterError) when the
    watch fails and ("recovered", source, None) once it works again."""

    def __init__(self, client: Any, path: str, query: Mapping[str, str], source: str,
                 out: queue.SimpleQueue | queue.Queue,
                 resource_version: str | None, server_timeout: int) -> None:
        self.client = client
        self.path = path
        self.query = dict(query)
        self.source = source
        self.out = out
        self.resource_version = resource_version
        self.server_timeout = server_timeout
        self._failing = False   # the last attempt failed; tell the owner when one works

    def _list_if_unknown(self) -> None:
        """List (putting RELISTED, then each object as ADDED) when no resourceVersion is
        known: at first, or after 410 Gone. Raises what the request raises."""
        if self.resource_version is not None:
            return
        listing = self.client.request("GET", self.path, self.query)
        self._recovered()
        self.resource_version = (listing.get("metadata") or {}).get("resourceVersion")
        self.out.put((self.source, RELISTED, None))
        for obj in listing.get("items") or []:
            self.out.put((self.source, "ADDED", obj))

    def _watch_query(self) -> dict[str, Any]:
        """The query resuming the watch from the last version seen (bookmarks included)."""
        return dict(self.query, resourceVersion=self.resource_version,
                    allowWatchBookmarks=True)

    def _take(self, kind: str, obj: dict[str, Any]) -> bool:
        """Handle one event of the stream: keep its version and put it (a bookmark only
        moves the version). False on 410 Gone (the version expired: list again); raises
        ClusterError on any other ERROR event."""
        if kind == "ERROR":
            if obj.get("code") == 410:
                self.resource_version = None    # expired: list again
                return False
            raise ClusterError(self.client.cluster, f"watch error {obj.get('code')}: "
                               f"{obj.get('message', '')}", obj.get("code"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind != "BOOKMARK":
            self.out.put((self.source, kind, obj))
        return True

    def _report(self, exc: BaseException) -> None:
        """Put the failure (described for its cluster) and remember to say when it works."""
        self._failing = True
        self.out.put(("error", self.source, describe(self.client.cluster, exc,
                                                     self.client.server)))

    def _recovered(self) -> None:
        """Tell the owner the cluster answers again (a quiet watch sends nothing)."""
        if self._failing:
            self._failing = False
            self.out.put(("recovered", self.source, None))
