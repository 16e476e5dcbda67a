"""The asking end's wait for the release's answers (`release-console control`): each
shard taking a request answers on the lease it listens on - or, once its cluster went
down, on the one it moved its channel to - and the answers are put together as one
`Ack` (`console.engine.steering_client.send`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.engine.steering_client import (LeaseView, NoAnswer, NothingToSteer,
                                            shard_number, shard_label)
from console.errors import UserError
from console.kube.client import ClusterError
from console.locks import control as wire
from console.plan import shard_of

if TYPE_CHECKING:
    from console.engine.core import Engine


@dataclass(frozen=True)
class Ack:
    """The release's answer to one request."""

    ok: bool
    detail: str
    by: str
    confirmed: bool
    refused: bool = False     # refused for who asked (unconfirmed, no rights), not for what


def answers(engine: Engine, release_id: str, action: str, request: dict[str, Any],
             targets: list[LeaseView], held: list[LeaseView], name: str, timeout: float,
             by: str, confirmed: bool) -> Ack:
    """Wait for each of `targets` (a listening lease, one per shard taking the request)
    to answer; one `Ack` for all."""
    # The answer comes on the lease the release (shard) listens on: its control lease,
    # or - when its cluster goes down meanwhile - the one it moved its channel to.
    n = max(shard_number(shard_label(v))[1] for v in targets)

    def own(view: LeaseView, target: LeaseView) -> bool:
        return n < 1 or shard_of(view.cluster, n) == shard_number(shard_label(target))[0]

    # Read the listening lease alone while it answers: another with an older
    # announcement (left while its cluster was down) is looked at only once that one
    # failed or lost the announcement - its cluster may hang each read.
    watched = {_key(t): [t] for t in targets}
    announced = {_key(t): [v for v in held if v is not t and own(v, t)
                           and v.steering.get("release") == release_id]
                 for t in targets}
    answers: dict[tuple[str, str], dict[str, Any] | None] = {}  # target -> answer (None: ended)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(answers) < len(targets):
        time.sleep(0.2)
        for target in targets:
            if _key(target) in answers:
                continue
            looked = watched[_key(target)]
            answer, listening, failed = _look(engine, name, request["id"], release_id, looked)
            more = [v for v in announced[_key(target)] if v not in looked]
            if answer is not None:
                answers[_key(target)] = answer
            elif (failed or not listening) and more:
                looked += more     # it may have moved meanwhile: look where it would go
            elif failed:
                looked += [v for v in held if own(v, target) and v not in looked]
            elif not listening:
                answers[_key(target)] = None
    if len(answers) < len(targets):
        late = [shard_label(t) or t.cluster for t in targets if _key(t) not in answers]
        where = f" by shard {', '.join(late)}" if n >= 1 else ""
        raise NoAnswer(f"release {release_id} did not acknowledge {action}{where} within "
                       f"{timeout:g}s (request {request['id']} stays on lease {name} of "
                       f"{', '.join(t.cluster for t in targets)})")
    given = [(shard_label(t), answers[_key(t)]) for t in targets]
    taken = [(label, a) for label, a in given if a is not None]
    if not taken:
        raise NothingToSteer(f"release {release_id} ended before taking the request")
    if n < 1:
        answer = taken[0][1]
        assert answer is not None
        return Ack(bool(answer.get("ok")), str(answer.get("detail") or ""), by, confirmed,
                   bool(answer.get("refused")))
    return _one_ack(given, by, confirmed)


def _key(view: LeaseView) -> tuple[str, str]:
    """(cluster, lease): an empty slice's lease may be on a cluster another shard holds."""
    return view.cluster, view.name


def _one_ack(given: list[tuple[str, dict[str, Any] | None]], by: str, confirmed: bool) -> Ack:
    """The shards' answers as one: refused if any shard refused who asked; taken if any
    shard took it (the others' answers named); else nothing to act on anywhere."""
    def says(label: str, answer: dict[str, Any] | None) -> str:
        return f"shard {label}: " + ("ended" if answer is None else
                                     str(answer.get("detail") or ""))
    refused = [(lbl, a) for lbl, a in given if a is not None and a.get("refused")]
    if refused:
        return Ack(False, "; ".join(says(lbl, a) for lbl, a in refused), by, confirmed, True)
    ok = [(lbl, a) for lbl, a in given if a is not None and a.get("ok")]
    if not ok:
        return Ack(False, "; ".join(says(lbl, a) for lbl, a in given), by, confirmed)
    rest = [says(lbl, a) for lbl, a in given if (lbl, a) not in ok]
    label = "shard" if len(ok) == 1 else "shards"
    return Ack(True, f"{ok[0][1]['detail']} ({label} {', '.join(lbl for lbl, _ in ok)})"
               + (f"; {'; '.join(rest)}" if rest else ""), by, confirmed)


def _look(engine: Engine, name: str, request_id: str, release_id: str,
          leases: list[LeaseView]) -> tuple[dict[str, Any] | None, bool, bool]:
    """(the answer to `request_id` on one of `leases` or None, whether one still carries
    the release's announcement, whether one could not be read)."""
    listening = failed = False
    for where in leases:
        try:
            place = engine.driver(where.cluster)
            lease = wire.read(place.client, place.namespace, where.name or name,
                              engine.request_timeout)
        except (wire.ChannelError, ClusterError, UserError):
            failed = True
            continue
        answer = wire.decoded(lease, wire.ACK, {}).get(request_id)
        if isinstance(answer, dict):
            return answer, True, failed
        listening |= wire.decoded(lease, wire.STEERING, {}).get("release") == release_id
    return None, listening, failed
