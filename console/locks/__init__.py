"""Release locks: one Kubernetes `Lease` per app and cluster, so two consoles never overlap.

A release takes, on every target cluster, the Lease `release-console-<app>` in the app's
namespace there (coordination.k8s.io/v1), with the holder identity
`user@host:pid/release-id` and, in the annotation `release-console/holder-process`, the
holder's boot id, pid namespace and process start time (`console.locks.process`). Taking it
uses optimistic concurrency: create it when absent, or replace it at the
`resourceVersion` read when it is free, surely dead, or expired; a 409 means another
console won the race. A live holder refuses the release with `LockHeld` (a `UserError`,
exit 2) naming the holder, before anything is touched.

Expiry is judged the client-go way, never by comparing the holder's `renewTime` with
this machine's clock (the holder's clock may be minutes off): a lease is expired when
its record has not changed for its `leaseDurationSeconds`, as observed on this
machine's monotonic clock since it was first read. The wall clock is only trusted in
the safe direction: a `renewTime` that still looks fresh refuses at once (no waiting
to find out that a live release holds it). A lease that looks stale is watched until
it changes (its holder is alive: refused) or stays unchanged for its duration (taken
over). At once, without waiting, only when its holder is surely gone: the same boot and
pid namespace as this console and a pid that runs no more (a console killed here).

While the release runs, a background thread renews every lease in parallel, each one
every half of the duration, each call bounded by that interval. A renewal that fails (a
slow or unreachable cluster, or this console too busy to send it) is retried after a
tenth of the duration and never by itself counts as a loss: the console's own
slowness must not fail a healthy rollout. A lease is lost only when another holder is
seen on it (it took over after the lease went unrenewed for its duration); `on_lost`
then tells the engine, which interrupts that cluster's rollout.

Using it (the engine, before the first cluster is touched)::

    lock = ReleaseLock.for_clusters({cid: (kube_client, namespace), ...}, app, release_id)
    with lock:                 # acquire() on enter (all or nothing), release() on exit
        ...                    # lock.lost: clusters whose lease was lost (should stay empty)

Every call goes through `console.kube.client.KubeClient.request` (its timeouts, its
bounded retries of 429/5xx, refused connections and TLS handshakes cut short). The lease
lives in the app namespace, which must exist; the ServiceAccount needs get, create and
update on `leases` (coordination.k8s.io) there.

Modules: `lease` (one cluster's lease: take, renew, give back, judge its holder),
`release` (`ReleaseLock`: every lease of one release, renewed in parallel rounds),
`process` (the holder process's identity, and whether it is surely gone), `control`
(the control channel's wire: steering requests, acknowledgements and live state as
annotations of the release Lease), `shards` (the shard board's wire: where the shards
of one `deploy --shard K/N` release are, as one annotation of a Lease).
"""

from __future__ import annotations

from console.locks.lease import (DEFAULT_DURATION, DEFAULT_TIMEOUT, PROCESS_ANNOTATION,
                                 ClusterLease, Clock, Holder, LockError, LockHeld,
                                 holder_identity, lease_name)
from console.locks.process import ProcessId, surely_gone, this_process
from console.locks.release import ReleaseLock

__all__ = ["DEFAULT_DURATION", "DEFAULT_TIMEOUT", "PROCESS_ANNOTATION", "ClusterLease", "Clock",
           "Holder", "LockError", "LockHeld", "ProcessId", "ReleaseLock", "holder_identity",
           "lease_name", "surely_gone", "this_process"]
