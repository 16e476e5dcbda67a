"""The asking end of the control channel (`release-console control`, `follow`).

Finds a running release on the fleet's Leases (`console.locks.control` for the wire),
names the person by the identity the cluster confirms (SelfSubjectReview), appends a
request to the release's control lease and waits for the release's acknowledgement.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from console.errors import UserError
from console.kube.client import ClusterError
from console.locks import control as wire
from console.locks import lease_name
from console.locks.lease import parse_time
from console.plan import shard_of

if TYPE_CHECKING:
    from console.engine.core import Engine
    from console.engine.steering_acks import Ack

REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


class NothingToSteer(UserError):
    """No such running release, or nothing to act on (exit 2)."""


class NoAnswer(UserError):
    """The release took no notice of the request within the timeout (exit 1)."""


class Unreadable(NoAnswer):
    """No Lease that could be read names the release, and some could not be read (they
    timed out, or their cluster is down): whether it runs is unknown - not "no such
    release" (exit 1, not 2)."""


@dataclass
class LeaseView:
    """The app's release Lease on one cluster, as read now."""

    cluster: str
    namespace: str
    holder: str = ""                     # holderIdentity ("" when free or absent)
    steering: dict[str, Any] = field(default_factory=dict)
    error: str | None = None             # why it could not be read
    unrenewed: float | None = None       # s since its holder last renewed it (None: unknown)
    duration: float = 60.0               # its leaseDurationSeconds
    name: str = ""                       # the Lease ("": the app's release Lease)

    @property
    def left_behind(self) -> bool:
        """Held, but not renewed for LEFT_BEHIND durations on this machine's clock: a
        release that ended (or died) while this cluster was down and could neither give
        the lease back nor take its announcement off. Trusted only to refuse steering
        (a clock that far off would make `control` say "not running", never act)."""
        return bool(self.holder) and self.unrenewed is not None and \
            self.unrenewed > LEFT_BEHIND * self.duration

    @property
    def release(self) -> str:
        """The release id of the holder (`user@host:pid/release-id`), "" when free."""
        return self.holder.rsplit("/", 1)[-1] if "/" in self.holder else ""


def read_leases(engine: Engine, clusters: Sequence[str] | None = None,
                timeout: float | None = None) -> list[LeaseView]:
    """The app's Lease on every cluster (or `clusters`), read at once with `timeout` (the
    status timeout unless given); an unreadable one carries its error."""
    ids = list(clusters if clusters is not None else engine.config.ids)
    name = lease_name(engine.config.app.name)

    def one(cid: str) -> LeaseView:
        return read_lease(engine, cid, name, timeout or engine.status_timeout)

    if not ids:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(ids)), thread_name_prefix="lease") as pool:
        return list(pool.map(one, ids))


def read_lease(engine: Engine, cid: str, name: str, timeout: float) -> LeaseView:
    """The Lease `name` on cluster `cid` as read now (an unreadable one carries its error)."""
    try:
        driver = engine.driver(cid)
        view = LeaseView(cid, driver.namespace, name="" if name == lease_name(
            engine.config.app.name) else name)
        lease = wire.read(driver.client, driver.namespace, name, timeout)
    except (wire.ChannelError, ClusterError, UserError) as exc:
        return LeaseView(cid, "", error=str(exc))
    spec = (lease or {}).get("spec") or {}
    view.holder = str(spec.get("holderIdentity") or "")
    view.steering = wire.decoded(lease, wire.STEERING, {})
    renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime"))
    if renewed is not None:
        view.unrenewed = time.time() - renewed.timestamp()
    try:
        view.duration = float(spec.get("leaseDurationSeconds") or view.duration)
    except (TypeError, ValueError):
        pass
    return view


def whoami(engine: Engine, cluster: str, timeout: float | None = None) -> tuple[str, bool]:
    """(who, confirmed): the user the cluster says these credentials are
    (SelfSubjectReview, asked with `timeout`, the status timeout unless given); the
    local operator name, unconfirmed, when it cannot say."""
    from console.session import operator_name
    try:
        answer = engine.driver(cluster).client.request(
            "POST", REVIEWS, body={"apiVersion": "authentication.k8s.io/v1",
                                   "kind": "SelfSubjectReview"},
            timeout=timeout or engine.status_timeout, retry=False)
        user = ((answer.get("status") or {}).get("userInfo") or {}).get("username")
        if user:
            return str(user), True
    except ClusterError:
        pass
    return operator_name(), False


ANNOUNCE_WAIT = 10.0   # s a release holding its leases gets to announce its channel
LEFT_BEHIND = 10       # lease durations without renewal (10 min by default): left behind
# s, with a cluster unreachable, for the release to move its channel: a hanging one is
# noticed after its quiet watch's probe and two failed reads (`console.engine.steering`:
# PROBE + FAILOVER request timeouts, 25 s by default), then the move is announced.
FAILOVER_WAIT = 60.0
# s, while no Lease that could be read names the release and some could not be read,
# reading again before saying it cannot tell: two rounds of request timeouts.
UNREAD_WAIT = 20.0
# Actions that only reduce what the release does: taken with the request shown on the
# reachable targets only (`console.engine.steering.REDUCING`).
REDUCING = ("pause", "abort", "reject")


def listening_leases(engine: Engine, release_id: str
                     ) -> tuple[list[LeaseView], list[LeaseView]]:
    """The leases the running `release_id` listens on - one, or one per shard of a
    release run as shards (`deploy --shard`), in shard order - and every other lease it
    holds that could be read; raises `NothingToSteer`. A release whose control lease
    cannot be read moves its channel to another of its leases (`console.engine.
    steering`): while it has not yet, this waits up to FAILOVER_WAIT s for it (then
    raises `NoAnswer`: it runs, try again); a shard
    holding leases that does not listen yet (it is opening its channel) gets
    ANNOUNCE_WAIT s. A Lease that cannot be read (timed out, its cluster down) may be
    the release's: while none that could be read names it, this reads again for up to
    UNREAD_WAIT s, then raises `Unreadable` rather than say there is no such release.
    Read with the request timeout: the status timeout is for a status line that must
    never stall, and a fresh process's first call on a loaded machine can outlast it."""
    start = time.monotonic()
    while True:
        views = read_leases(engine, timeout=engine.request_timeout)
        # A lease its release left behind (not renewed for LEFT_BEHIND durations) keeps
        # an announcement nobody serves: not where the release listens.
        behind = [v for v in views if v.release == release_id and v.left_behind]
        held = [v for v in views if v.release == release_id and not v.left_behind]
        listening = _listening(held, release_id)
        # Shards with no cluster in their slice listen on the board's cluster.
        listening += _empty_slices(engine, held, listening, release_id)
        listening.sort(key=lambda v: shard_number(shard_label(v)))
        unread = [v for v in views if v.error]
        # Between taking its leases and opening the channel a release does not listen
        # yet, and one whose control lease is unreachable moves to another: give it a
        # moment before saying it never will.
        wait = (ANNOUNCE_WAIT if not unread else FAILOVER_WAIT if held else UNREAD_WAIT)
        if listening and not silent_shards(held, listening):
            break
        # None held: no such release - unless a Lease could not be read (it may be one
        # it holds), but a lease it left behind says it is not running.
        if (not held and (behind or not unread)) or time.monotonic() - start > wait:
            break
        time.sleep(0.5)
    if listening:
        return listening, [v for v in held if v not in listening]
    if held and unread:
        # It runs (it holds these), it has not moved its channel yet: no answer, not "no
        # such release" (exit 1, not 2).
        raise NoAnswer(
            f"release {release_id} holds {', '.join(v.cluster for v in held)}, but the "
            f"lease it listens on is not among them: {_unreachable(unread)} unreachable "
            f"(it did not move its channel within {wait:g}s; try again)")
    if held:
        raise NothingToSteer(f"release {release_id} holds {', '.join(v.cluster for v in held)} "
                             "but does not listen for control (started without the control "
                             "channel)")
    if behind:
        raise NothingToSteer(
            f"release {release_id} is not running: its lease on "
            f"{', '.join(v.cluster for v in behind)} was last renewed "
            f"{min(v.unrenewed or 0 for v in behind) / 60:.0f} min ago - left behind "
            "(with its announcement) while that cluster was down; the next release there "
            "takes it over")
    if unread:
        # An unreadable Lease is not an absent one: it may be the very one it holds.
        raise Unreadable(f"cannot tell whether release {release_id} runs: no Lease that "
                         f"could be read names it, and {_unreachable(unread)} could not be "
                         f"read (tried for {wait:g}s); try again once it answers")
    raise NothingToSteer(f"no running release {release_id} on this fleet's clusters")


def _listening(held: Sequence[LeaseView], release_id: str) -> list[LeaseView]:
    """Per shard (one group when not sharded) the lease it listens on: an announcement
    is the release's only while it holds that lease; of several (one left behind on a
    lease whose cluster was down) the one with the most moves."""
    best: dict[str, LeaseView] = {}
    for view in sorted((v for v in held if v.steering.get("release") == release_id),
                       key=lambda v: (-moves_of(v), v.cluster)):
        best.setdefault(shard_label(view), view)
    return [best[label] for label in sorted(best, key=shard_number)]


def _empty_slices(engine: Engine, held: Sequence[LeaseView],
                  listening: Sequence[LeaseView], release_id: str) -> list[LeaseView]:
    """The listening leases of the shards of `release_id` that hold no lease (no cluster
    in their slice): each listens on its own Lease on the shard board's cluster, which
    the other shards announce (`console.engine.shards.ShardBoard.listen`)."""
    from console.locks.shards import listen_name
    n = max((shard_number(shard_label(v))[1] for v in listening), default=0)
    board = next((v.steering["board"] for v in listening
                  if isinstance(v.steering.get("board"), str)), None)
    if n < 1 or board not in engine.config.ids:
        return []
    owning = {shard_number(shard_label(v))[0] for v in listening} | \
        {shard_of(v.cluster, n) for v in held}
    found = [read_lease(engine, str(board), listen_name(engine.config.app.name, k),
                        engine.request_timeout)
             for k in range(1, n + 1) if k not in owning]
    return [v for v in found if v.release == release_id and not v.left_behind
            and v.steering.get("release") == release_id and shard_label(v)]


def with_empty_slices(engine: Engine, views: Sequence[LeaseView],
                      release_id: str) -> list[LeaseView]:
    """`views` (the fleet's Leases) and, of a release run as shards, the listening
    leases of its shards with no cluster in their slice - not among the fleet's leases
    (they are on the board's cluster), so `live_state` would leave them out."""
    held = [v for v in views if v.release == release_id and not v.left_behind]
    return [*views, *_empty_slices(engine, held, _listening(held, release_id), release_id)]


def shard_label(view: LeaseView) -> str:
    """`K/N` of the shard announced on `view`, "" when the release is not sharded."""
    label = view.steering.get("shard")
    return label if isinstance(label, str) else ""


def shard_number(label: str) -> tuple[int, int]:
    """(K, N) of `K/N`; (0, 0) for "" or a malformed label."""
    try:
        k, n = label.split("/")
        return int(k), int(n)
    except ValueError:
        return 0, 0


def silent_shards(held: Sequence[LeaseView], listening: Sequence[LeaseView]) -> list[str]:
    """`K/N` of each shard that holds one of `held` but does not listen (yet)."""
    n = max((shard_number(shard_label(v))[1] for v in listening), default=0)
    if n < 1:
        return []
    heard = {shard_number(shard_label(v))[0] for v in listening}
    return [f"{k}/{n}" for k in sorted({shard_of(v.cluster, n) for v in held} - heard)]


def live_state(views: Sequence[LeaseView], release_id: str) -> dict[str, Any]:
    """The release's live state for followers, from its announcements among `views`:
    of a release run as shards, one state for all - paused while any shard is (`paused
    shards` names them), the gate and bake as shard 1 (the gate shard) announces them."""
    listening = _listening([v for v in views if not v.left_behind], release_id)
    if len(listening) <= 1:
        return dict(listening[0].steering) if listening else {}
    state = dict(listening[0].steering)
    paused = [shard_label(v) for v in listening if v.steering.get("paused")]
    state["paused"] = bool(paused)
    state["paused_shards"] = paused
    state["shards"] = [shard_label(v) for v in listening]
    for view in listening[1:]:
        for key in ("gate", "bake"):
            if key not in state and view.steering.get(key):
                state[key] = view.steering[key]
    return state


def moves_of(view: LeaseView) -> int:
    """How often the release had moved its channel when it announced it on `view`."""
    moves = view.steering.get("moves", 0)
    return moves if isinstance(moves, int) else 0


def _unreachable(views: Sequence[LeaseView]) -> str:
    """`a (why)`, `a, b and 3 more`: the clusters whose lease could not be read."""
    if len(views) == 1:
        return f"{views[0].cluster} ({views[0].error})"
    names = [v.cluster for v in views]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def send(engine: Engine, release_id: str, action: str, cluster: str | None = None, *,
         rollback: bool = False, timeout: float = 30.0) -> Ack:
    """Ask the running `release_id` to do `action` and wait for its answer (up to
    `timeout` s) - of a release run as shards, the answer of the shard that takes it
    (`console.engine.shards.taker`), or of every shard for pause, resume and abort.
    Raises `NothingToSteer` (no such release), `UserError` (the cluster refused the
    write), `NoAnswer` (no answer in time; `Unreadable`: whether it runs cannot be told)."""
    if action not in wire.ACTIONS:
        raise UserError(f"unknown action {action!r}; one of {', '.join(wire.ACTIONS)}")
    if action in wire.NEEDS_CLUSTER and not cluster:
        raise UserError(f"{action} needs a CLUSTER")
    if cluster and cluster not in engine.config.ids:
        raise UserError(f"unknown cluster {cluster!r} in {engine.config.path}")
    listening, others = listening_leases(engine, release_id)
    targets = _takers(listening, action, cluster, release_id)
    # The request timeout: an unconfirmed name is refused, so a slow answer must not
    # turn into a refusal.
    by, confirmed = whoami(engine, _naming_cluster(action, targets, [*listening, *others]),
                           engine.request_timeout)
    from console.session import operator_name
    request = {"id": secrets.token_hex(6), "release": release_id,
               "action": action, "cluster": cluster or "",
               "by": by, "operator": operator_name(), "confirmed": confirmed,
               "rollback": rollback,
               # An answer is bound to the gate it was given for (the wave it lets start).
               "gate": (targets[0].steering.get("gate") or {}).get("wave")
               if action in ("approve", "reject") else None,
               "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    name = lease_name(engine.config.app.name)

    def append(lease: dict[str, Any], notes: dict[str, str]) -> bool:
        if wire.decoded(lease, wire.STEERING, {}).get("release") != release_id:
            raise NothingToSteer(f"release {release_id} ended meanwhile")
        requests = [r for r in wire.decoded(lease, wire.CONTROL, [])
                    if isinstance(r, dict)]
        notes[wire.CONTROL] = wire.dump([*requests, request][-wire.KEEP:])
        return True

    # First on every other lease the release holds - the proof, checked by the release,
    # that the API server let us update the app's Lease on each of its clusters - then
    # on the lease(s) it listens on, where it (each shard taking it) takes it.
    rest = [v for v in listening if v not in targets] + others
    _vouch(engine, release_id, rest, request, name, tolerate_down=action in REDUCING)
    # An empty slice's shard (its lease on the board's cluster) last: its proof is on
    # every other shard's leases, their listening ones too (`ShardBoard.proof`).
    for target in sorted(targets, key=lambda v: bool(v.name)):
        driver = engine.driver(target.cluster)
        try:
            if wire.change(driver.client, driver.namespace, target.name or name, append,
                           engine.request_timeout) is None:
                raise NothingToSteer(f"release {release_id} ended meanwhile")
        except wire.ChannelError as exc:
            raise UserError(f"cluster {target.cluster!r}: {exc}") from None
    from console.engine.steering_acks import answers
    return answers(engine, release_id, action, request, targets, listening + others, name,
                   timeout, by, confirmed)


def _takers(listening: list[LeaseView], action: str, cluster: str | None,
            release_id: str) -> list[LeaseView]:
    """The listening lease(s) of the shard(s) that take `action` (the one lease when
    the release is not sharded); raises `NothingToSteer` when that shard does not listen."""
    n = max(shard_number(shard_label(v))[1] for v in listening)
    if n < 1:
        return listening[:1]
    from console.engine.shards import taker
    k = taker(action, cluster, n)
    if k is None:
        return listening
    found = [v for v in listening if shard_number(shard_label(v))[0] == k]
    if not found:
        what = f"{cluster} is released by" if cluster else "its gates are answered by"
        raise NothingToSteer(f"release {release_id} runs as {n} shards and {what} shard "
                             f"{k}/{n}, which does not listen for control (it ended, or "
                             "has not opened its channel yet)")
    return found


def _naming_cluster(action: str, targets: Sequence[LeaseView],
                    held: Sequence[LeaseView]) -> str:
    """The cluster whose SelfSubjectReview names the person. For approve and reject: the
    first (sorted) of the leases the taking shard (the release, when not sharded) holds
    - where the console's `a` and the terminal's yes ask (`console.engine.identities`,
    `console.cli.approvals`) - and not the lease it listens on: after its channel moved
    that is another cluster, whose ServiceAccount for the same credentials has another
    name, and one person would count as two approvers. (An approve needs every target
    reachable anyway.) Other actions ask where the release listens: it is reachable."""
    if action not in ("approve", "reject"):
        return targets[0].cluster
    k, n = shard_number(shard_label(targets[0]))
    own = [v.cluster for v in held if n < 1 or shard_of(v.cluster, n) == k]
    return min(own, default=targets[0].cluster)


def _vouch(engine: Engine, release_id: str, leases: Sequence[LeaseView],
           request: dict[str, Any], name: str, tolerate_down: bool = False) -> None:
    """Append `request` to each of `leases` (the release's other leases), at once;
    raises `UserError` naming every cluster that refused the write (403: no rights) or,
    unless `tolerate_down` (an action that only reduces what the release does), could
    not be reached."""
    def one(view: LeaseView) -> str | None:
        def append(lease: dict[str, Any], notes: dict[str, str]) -> bool:
            holder = str(((lease.get("spec") or {}).get("holderIdentity")) or "")
            if not holder.endswith(f"/{release_id}"):
                return False    # given back meanwhile: the release no longer looks there
            requests = [r for r in wire.decoded(lease, wire.CONTROL, []) if isinstance(r, dict)]
            notes[wire.CONTROL] = wire.dump([*requests, request][-wire.KEEP:])
            return True
        try:
            driver = engine.driver(view.cluster)
            wire.change(driver.client, driver.namespace, view.name or name, append,
                        engine.request_timeout)
        except wire.ChannelError as exc:
            if tolerate_down and exc.status != 403:
                return None   # the release leaves it out of the proof as unreachable
            return f"cluster {view.cluster!r}: {exc}"
        except (ClusterError, UserError) as exc:
            return f"cluster {view.cluster!r}: {exc}"
        return None

    if not leases:
        return
    with ThreadPoolExecutor(max_workers=min(32, len(leases)), thread_name_prefix="vouch") as pool:
        failed = [why for why in pool.map(one, leases) if why is not None]
    if failed:
        more = f" (and {len(failed) - 3} more clusters)" if len(failed) > 3 else ""
        raise UserError("; ".join(failed[:3]) + more + " - steering a release needs the "
                        "app's rights on every cluster it targets (and, but for pause, "
                        "abort and reject, every one of them reachable)")
