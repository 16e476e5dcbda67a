"""`ReleaseLock`: the leases of one release on all its clusters, renewed in the background.

Taking them: every lease read at once (stale ones are watched over the same duration),
then taken one by one in cluster order, all or nothing. Renewing them: each lease every
half of the shortest duration (one that failed is tried again after a tenth of it), the
calls in parallel and each bounded by the interval; only another holder seen on a lease
is a loss.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from console.locks.lease import (DEFAULT_DURATION, DEFAULT_TIMEOUT, ClusterLease, LockError,
                                 holder_identity)

log = logging.getLogger(__name__)

RENEWERS = 64                # renewals in flight at once
STOP_POLL = 0.25             # s between looks at the stop flag while renewals run


# Leases this process holds: (API server, namespace, lease) -> the thread that took them.
_HELD: dict[tuple[str, str, str], int] = {}
_HELD_LOCK = threading.Lock()


class ReleaseLock:
    """The leases of one release on all its clusters, renewed in the background."""

    def __init__(self, leases: Sequence[ClusterLease], *,
                 on_lost: Callable[[str, str], None] | None = None) -> None:
        """`on_lost(cluster, reason)` is called (from the renewer) when another holder
        took a lease."""
        self.leases = sorted(leases, key=lambda lease: lease.cluster)
        self.on_lost = on_lost
        self.lost: dict[str, str] = {}
        self.failing: dict[str, str] = {}    # cluster -> why its last renewal failed
        self._held: list[ClusterLease] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_clusters(cls, clients: Mapping[str, tuple[Any, str]], app: str, release_id: str,
                     *, user: str | None = None, duration: int = DEFAULT_DURATION,
                     timeout: float = DEFAULT_TIMEOUT,
                     on_lost: Callable[[str, str], None] | None = None) -> ReleaseLock:
        """One lease per cluster: `clients` maps cluster id -> (KubeClient, namespace)."""
        identity = holder_identity(release_id, user)
        return cls([ClusterLease(kube, cluster, namespace, app, identity, duration=duration,
                                 timeout=timeout)
                    for cluster, (kube, namespace) in clients.items()], on_lost=on_lost)

    def acquire(self, reentrant: bool = False) -> ReleaseLock:
        """Take every lease or none: on a refusal, give back and raise.

        Every lease is read at once (so stale ones are all watched over the same
        duration), then taken one by one in cluster order (two releases racing for the
        same clusters meet on the first one they share: exactly one goes on).
        `reentrant`: a lease an enclosing `ReleaseLock` of this same thread holds is left
        to it (the engine passes True, so a caller that locked the clusters and then runs
        the engine, which locks them too, is not refused by its own lock).
        """
        me = threading.get_ident()
        with _HELD_LOCK:
            todo = [lease for lease in self.leases
                    if not (reentrant and _HELD.get(lease.key) == me)]
        try:
            current = _parallel(todo, lambda lease: lease.read(), "lock-read")
            for lease in todo:
                lease.acquire(current[lease.cluster], read=False)
                self._held.append(lease)
                with _HELD_LOCK:
                    _HELD[lease.key] = me
        except BaseException:
            self._give_back()
            raise
        if self._held:
            self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                            name="release-lock-renewer")
            self._thread.start()
        return self

    def release(self) -> list[str]:
        """Stop renewing and give every lease back; returns problems (never raises)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(lease.timeout for lease in self.leases) * 2 + 1)
        return self._give_back()

    def __enter__(self) -> ReleaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _give_back(self) -> list[str]:
        held, self._held = self._held, []
        with _HELD_LOCK:
            for lease in held:
                _HELD.pop(lease.key, None)

        def give(lease: ClusterLease) -> str | None:
            try:
                lease.release()
            except LockError as err:
                return str(err)
            return None

        answers = _parallel(held, give, "lock-release", errors=False)
        return [problem for lease in held if (problem := answers.get(lease.cluster))]

    def _renew_loop(self) -> None:
        """Each lease renewed every half of the shortest duration; one whose renewal
        failed is tried again after a tenth of it, until it gets through (never two
        renewals of one lease at once). Each call is bounded by the interval, so a slow
        cluster never holds the others' renewals back.

        The leases wait in a heap by when they are due, and finished renewals come back
        on a queue: a round of 1,000 renewals looked over every lease and waited on
        every renewal in flight (`concurrent.futures.wait`) once per renewal that ended
        - about a CPU second a round."""
        interval = max(1.0, min(lease.duration for lease in self._held) / 2)
        retry = max(0.5, interval / 5)
        order = itertools.count()
        start = time.monotonic()
        due: list[tuple[float, int, ClusterLease]] = [
            (start + interval, next(order), lease) for lease in self._held]
        heapq.heapify(due)
        ended: queue.SimpleQueue[tuple[Future[bool], ClusterLease]] = queue.SimpleQueue()
        in_flight = 0
        pool = ThreadPoolExecutor(max_workers=min(RENEWERS, len(self._held)),
                                  thread_name_prefix="lease-renew")
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                while due and due[0][0] <= now:
                    lease = heapq.heappop(due)[2]
                    if lease.cluster in self.lost:
                        continue        # another release holds it: never renewed again
                    future = pool.submit(lease.renew, min(lease.timeout, interval))
                    future.add_done_callback(
                        lambda f, lease=lease: ended.put((f, lease)))
                    in_flight += 1
                pause = max(0.0, due[0][0] - now) if due else interval
                if not in_flight:
                    self._stop.wait(pause)
                    continue
                # Looked at often enough to end soon after release() asks.
                try:
                    batch = [ended.get(timeout=min(pause, STOP_POLL))]
                except queue.Empty:
                    continue
                while True:
                    try:
                        batch.append(ended.get_nowait())
                    except queue.Empty:
                        break
                for future, lease in batch:
                    in_flight -= 1
                    ok = self._renewed(lease, future)
                    heapq.heappush(due, (time.monotonic() + (interval if ok else retry),
                                         next(order), lease))
        finally:
            # Calls in flight end within their timeout; waiting for them keeps a late
            # renewal from racing the release of the lease.
            pool.shutdown(wait=True, cancel_futures=True)

    def _renewed(self, lease: ClusterLease, future: Future[bool]) -> bool:
        """Note how a renewal ended; False when it failed (to be tried again soon)."""
        try:
            ours = future.result()
        except LockError as err:
            # Not a loss: nobody else holds it (that would have been a 409 and a read).
            # Keep renewing; the engine's rollout on that cluster goes on.
            if lease.cluster not in self.failing:
                log.warning("renewing the release lock on %s failed (retrying): %s",
                            lease.cluster, err)
            self.failing[lease.cluster] = str(err)
            return False
        self.failing.pop(lease.cluster, None)
        if ours:
            return True
        holder = lease.holder_now
        reason = "the lease was taken over by another release" + \
            (f" ({holder})" if holder else "")
        self.lost[lease.cluster] = reason
        if self.on_lost is not None:
            self.on_lost(lease.cluster, reason)
        return True


def _parallel(leases: Sequence[ClusterLease], fn: Callable[[ClusterLease], Any],
              name: str, errors: bool = True) -> dict[str, Any]:
    """cluster -> fn(lease), run at once; the first error (in cluster order) is raised."""
    if not leases:
        return {}
    with ThreadPoolExecutor(max_workers=min(RENEWERS, len(leases)),
                            thread_name_prefix=name) as pool:
        futures = {lease.cluster: pool.submit(fn, lease) for lease in leases}
    out = {}
    for cluster, future in futures.items():
        if errors:
            out[cluster] = future.result()
        else:
            out[cluster] = future.result() if future.exception() is None else None
    return out
