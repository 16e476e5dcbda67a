"""Who the console's person is, as the cluster of each release confirms it.

A release run from the console records its actions (pause, abort, a gate's approval)
under the identity a cluster confirms for the fleet file's credentials
(SelfSubjectReview, `steering_client.whoami`), the local name beside it. Which cluster:
the one the release's control channel lives on - its control lease, the first of its
targets in sorted order (`console.locks.release`) - because that is the cluster
`release-console control` asks for the same release, so an action taken in the console
and one taken through the channel name the same person the same way, and it is a
cluster the release holds (reachable when it started). The fleet's first cluster may be
no target of the release at all, may be down, or may map the credentials to someone
else.

Each cluster is asked once, in the background, as soon as a release on it starts; an
action waits for that answer at most the status timeout, then keeps the local name
alone (unconfirmed), as it does when the cluster cannot say.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.engine.core import Engine

Who = tuple[str, bool]      # (name, confirmed by the cluster)


class Identities:
    """The confirmed identity per cluster (asked once) and per running release."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._asked: dict[str, Future[Who]] = {}
        self._release_cluster: dict[str, str] = {}   # running release id -> its cluster

    def release_started(self, release_id: str, targets: list[str]) -> None:
        """A release over `targets` started: ask its channel's cluster now."""
        if not targets:
            return
        cluster = min(targets)   # the control lease (ReleaseLock sorts by cluster)
        with self._lock:
            self._release_cluster[release_id] = cluster
        self._ask(cluster)

    def release_ended(self, release_id: str) -> None:
        with self._lock:
            self._release_cluster.pop(release_id, None)

    def cluster_of(self, release_id: str) -> str | None:
        """The cluster whose answer names the person for `release_id` (None: unknown)."""
        with self._lock:
            return self._release_cluster.get(release_id)

    def who(self, release_id: str | None = None, cluster: str | None = None) -> Who | None:
        """The person as `cluster` (or the running `release_id`'s cluster) confirms it;
        None when neither is known or it did not answer within the request timeout (what
        `control` waits too: a slower answer here would leave the person unconfirmed)."""
        if cluster is None and release_id is not None:
            cluster = self.cluster_of(release_id)
        if cluster is None:
            return None
        try:
            return self._ask(cluster).result(timeout=self.engine.request_timeout)
        except FutureTimeout:
            return None

    def _ask(self, cluster: str) -> Future[Who]:
        with self._lock:
            asked = self._asked.get(cluster)
            if asked is not None:
                return asked
            asked = self._asked[cluster] = Future()

        def ask() -> None:
            from console.engine.steering_client import whoami
            from console.session import operator_name
            try:
                who = whoami(self.engine, cluster, self.engine.request_timeout)
            except Exception:  # noqa: BLE001 - e.g. its credentials do not load
                who = (operator_name(), False)
            if not who[1]:
                with self._lock:   # the next release on it asks again
                    self._asked.pop(cluster, None)
            asked.set_result(who)

        threading.Thread(target=ask, name=f"whoami-{cluster}", daemon=True).start()
        return asked


def confirmed(who: Who | None, local: str) -> str:
    """`local` (the console's operator name) as the cluster confirms it:
    `system:...:admin (alice)`; `local` alone while the cluster has not said."""
    if who is None or not who[1] or not local or who[0] == local:
        return local
    if local.startswith(who[0]):
        return local
    return f"{who[0]} ({local})"

