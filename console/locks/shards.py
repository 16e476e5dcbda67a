"""The shard board's wire: how the shards of one release (`deploy --shard K/N`) tell
each other where they are, as one annotation of a Lease.

The board is the Lease `release-console-<app>.shards` in the app's namespace of the
*coordinator cluster* - the first of the whole release's targets in sorted order, so
every shard finds the same one without talking to the others (app names are DNS
labels, so the dotted name never meets a release lock's `release-console-<app>`). It
holds no lock: nobody is its holder, its spec stays empty; it is created on first use
and never deleted (the release's ServiceAccount has get, create and update on leases,
no delete). A release's board is taken off the lease by the last of its shards to end
(the others ended, or were found gone): the lease is left with no board annotation.

One annotation, `release-console/shard-board`: JSON `{release id: board}`, the newest
`KEEP` releases kept, where a board is

    {"of": N, "started": ISO time,
     "shards": {"K": {"wave": last wave finished (-1: none; "preflight": -2 before it
                       passed), "failures": clusters of K counted against the budget,
                      "beat": a counter the shard bumps while it lives, "ended": its
                      outcome once it ended, "why": a reason it stopped, "gone": set
                      by a shard that found it stopped reporting, "results": its
                      results so far {"counts": {outcome: n}, "named": {cluster:
                      [outcome, error]} (not healthy, up to 200)}}},
     "gates": {"W": {"decision", "by", "rollback"}},   # written by shard 1 only
     "stop": {"by": K, "why": reason,                  # a shard that stopped all
              "boards": [clusters]},                   # (shards given different boards)
     "boards": {"K": cluster}}   # on the default board: shard K uses the board there
                                 # (`console.engine.shard_split`)

A shard with no cluster in its slice listens for `control` on the Lease
`release-console-<app>.shard-K` beside the board (`listen_name`), held like a release
lock while it runs.

Each shard writes only its own entry (and shard 1 the gates): every write is a read
and a replace at the read `resourceVersion` (`console.locks.control.change`), so
concurrent writers never lose each other's entries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from console.kube.client import ClusterError, KubeClient
from console.locks import control
from console.locks.control import ChannelError
from console.locks.lease import LEASES

BOARD = "release-console/shard-board"
KEEP = 8                  # releases kept on the board (oldest dropped)


def board_name(app: str) -> str:
    """The shard board Lease of `app` (a dotted name: never an app's release lock)."""
    return f"release-console-{app}.shards"


def listen_name(app: str, shard: int) -> str:
    """The Lease a shard with no cluster in its slice listens on for `control`, on the
    board's cluster (`console.engine.shards.ShardBoard.listen`): dotted, like the board."""
    return f"release-console-{app}.shard-{shard}"


def ensure(kube: KubeClient, namespace: str, name: str, timeout: float) -> None:
    """Create the board Lease when absent (a 409: another shard just did)."""
    if control.read(kube, namespace, name, timeout) is not None:
        return
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "release-console"}},
            "spec": {}}
    try:
        kube.request("POST", LEASES.format(namespace=namespace), body=body,
                     timeout=timeout, retry=False)
    except ClusterError as exc:
        if exc.status != 409:
            raise ChannelError(f"cannot create the shard board lease {name} in namespace "
                               f"{namespace}: {exc.reason}", exc.status) from None


def boards(lease: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every release's board on the lease (empty when none or unreadable)."""
    found = control.decoded(lease, BOARD, {})
    return {str(k): v for k, v in found.items() if isinstance(v, dict)}


def read(kube: KubeClient, namespace: str, name: str, release_id: str,
         timeout: float) -> dict[str, Any]:
    """The board of one release (empty before any shard wrote it)."""
    return boards(control.read(kube, namespace, name, timeout)).get(release_id, {})


def update(kube: KubeClient, namespace: str, name: str, release_id: str,
           edit: Callable[[dict[str, Any]], None], timeout: float,
           missing_ok: bool = False) -> dict[str, Any]:
    """Let `edit(board)` change one release's board in place and write it (read and
    replace at the read version, again on a 409; an edit that changes nothing writes
    nothing); returns the board as written. No lease: `ChannelError`, or nothing done
    ({}) when `missing_ok`."""
    written: dict[str, Any] = {}

    def change(lease: dict[str, Any], notes: dict[str, str]) -> bool:
        every = boards(lease)
        board = every.pop(release_id, {})
        before = json.dumps(board, sort_keys=True)
        edit(board)
        written.clear()
        written.update(board)
        if json.dumps(board, sort_keys=True) == before:
            return False   # nothing changed: no write (no new version for the others)
        if board:
            # This release last: the oldest fall off the end of KEEP.
            every[release_id] = board
        # An edit that empties the board takes the release off (it ended everywhere).
        if every:
            notes[BOARD] = json.dumps(dict(list(every.items())[-KEEP:]), sort_keys=False,
                                      separators=(",", ":"))
        else:
            notes.pop(BOARD, None)
        return True

    if control.change(kube, namespace, name, change, timeout) is None:
        if missing_ok:
            return {}
        raise ChannelError(f"the shard board lease {name} in namespace {namespace} is gone")
    return written


__all__ = ["BOARD", "ChannelError", "board_name", "boards", "listen_name", "ensure", "read",
           "update"]
