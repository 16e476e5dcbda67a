"""The gates of a release run as shards (`console.engine.shards`): what a gate shows of
the whole release - every shard's finished clusters, rebuilt from the results each
shard publishes on the board, and the whole next wave - and who answers it: shard 1
asks its approver and writes the answer on the board; the other shards wait for that
answer there."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from console.engine.api import (Approver, ClusterResult, GateAnswer, GateDecision,
                                GateRequest, Outcome)
from console.locks import shards as wire
from console.locks.control import ChannelError
from console.plan import shard_of

if TYPE_CHECKING:
    from console.kube.client import KubeClient
    from console.plan import Plan

log = logging.getLogger(__name__)

POLL = 0.5                 # s between looks at the board while waiting for shard 1


class ShardGates:
    """The gate half of `console.engine.shards.ShardBoard` (its board, shard and plan)."""

    kube: KubeClient
    namespace: str
    name: str
    release_id: str
    shard: int
    shards: int
    timeout: float
    request_timeout: float
    whole: Plan | None
    tag: str
    # Finished clusters of the other shards the last gate could not list (a shard
    # names at most NAMED that did not end healthy; past that they are only counted).
    unlisted: int = 0

    @property
    def label(self) -> str:
        """`2/3`."""
        return f"{self.shard}/{self.shards}"

    @property
    def gate_shard(self) -> bool:
        """Whether this shard answers the gates for all (shard 1)."""
        return self.shard == 1

    def gate_view(self, next_wave: int, own: list[ClusterResult]
                  ) -> tuple[list[ClusterResult], tuple[str, ...], dict[str, int]]:
        """What a gate shows of the whole release (read after the barrier, so every
        shard published the waves before it): every shard's finished clusters in plan
        order (`own` for this shard's; another shard's healthy ones are those it did not
        name), the whole next wave, and the finished clusters counted by outcome."""
        try:
            board = wire.read(self.kube, self.namespace, self.name, self.release_id,
                              self.request_timeout)
        except ChannelError as exc:
            log.warning("release %s shard %s: shard board: %s", self.release_id,
                        self.label, exc)
            board = {}
        entries = board.get("shards") or {}
        whole = self.whole
        mine = {r.cluster: r for r in own}
        results: list[ClusterResult] = []
        counts: dict[str, int] = {}
        unlisted = 0
        for r in own:
            counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
        for k, entry in entries.items():
            if k != str(self.shard) and isinstance(entry, dict):
                told = (entry.get("results") or {}).get("counts") or {}
                for outcome, n in told.items():
                    counts[outcome] = counts.get(outcome, 0) + int(n)
        for wave in (whole.waves[:next_wave] if whole else ()):
            for cid in wave.clusters:
                k = shard_of(cid, self.shards)
                if k == self.shard:
                    if cid in mine:
                        results.append(mine[cid])
                    continue
                told = (entries.get(str(k)) or {}).get("results") or {}
                named = (told.get("named") or {}).get(cid)
                # Unnamed is healthy only when the shard named every other ending.
                all_named = sum(int(n) for o, n in (told.get("counts") or {}).items()
                                if o != Outcome.HEALTHY.value) == len(told.get("named") or {})
                if isinstance(named, list) and len(named) == 2 and \
                        named[0] in {o.value for o in Outcome}:
                    results.append(ClusterResult(cid, named[0], None, self.tag,
                                                 error=named[1] or None))
                elif told and all_named:
                    results.append(ClusterResult(cid, Outcome.HEALTHY, None, self.tag))
                else:
                    unlisted += 1
        # Said with the question (`GateRequest.unlisted`) and to followers: the list
        # is cut, the counts are not.
        self.unlisted = unlisted
        following = whole.waves[next_wave].clusters if whole and next_wave < len(whole.waves) \
            else ()
        return results, tuple(following), counts

    def approver(self, own: Approver) -> Approver:
        """The approver of this shard: shard 1 asks `own` and writes the answer on the
        board; the others wait for that answer there."""
        if self.gate_shard:
            def ask(request: GateRequest) -> GateAnswer:
                answer = own(replace(request, unlisted=self.unlisted))
                decided = {"decision": GateDecision(answer.decision).value, "by": answer.by,
                           "rollback": bool(answer.rollback)}

                def edit(board: dict[str, Any]) -> None:
                    board.setdefault("gates", {})[str(request.next_wave)] = decided
                try:
                    wire.update(self.kube, self.namespace, self.name, self.release_id, edit,
                                self.request_timeout)
                except ChannelError as exc:
                    # The others cannot learn the answer: stop here too.
                    return GateAnswer(GateDecision.REJECT,
                                      by=f"shard board unwritable ({exc})")
                return answer
            return ask

        def wait(request: GateRequest) -> GateAnswer:
            seen: tuple[str, float] | None = None
            while True:
                try:
                    board = wire.read(self.kube, self.namespace, self.name,
                                      self.release_id, self.request_timeout)
                except ChannelError:
                    board = {}
                decided = (board.get("gates") or {}).get(str(request.next_wave))
                if isinstance(decided, dict):
                    return GateAnswer(GateDecision(decided.get("decision", "reject")),
                                      by=f"{decided.get('by') or '?'} (via shard 1)",
                                      rollback=bool(decided.get("rollback")))
                stop = board.get("stop")
                if isinstance(stop, dict):
                    # A shard stopped the release: shard 1 rejects (or already did
                    # and may never write it, as it does not ask): so does this one.
                    return GateAnswer(GateDecision.REJECT,
                                      by=str(stop.get("why") or f"shard {stop.get('by')} "
                                                                f"stopped"))
                lead = (board.get("shards") or {}).get("1")
                if isinstance(lead, dict) and lead.get("ended"):
                    return GateAnswer(GateDecision.REJECT,
                                      by=f"shard 1/{self.shards} ended "
                                         f"{lead.get('ended')} before answering")
                mark, now = json.dumps(lead, sort_keys=True), time.monotonic()
                if seen is None or seen[0] != mark:
                    seen = (mark, now)
                elif now - seen[1] > self.timeout:
                    return GateAnswer(GateDecision.REJECT,
                                      by=f"shard 1/{self.shards} stopped reporting (no "
                                         f"heartbeat for {self.timeout:g}s)")
                time.sleep(POLL)
        return wait
