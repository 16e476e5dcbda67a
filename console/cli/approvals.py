"""Gate approvals given where a headless `deploy` runs: `--yes` and the terminal prompt.

Who approved is the identity the cluster confirms (SelfSubjectReview, as the control
channel records it), the local name beside it. A strategy whose gates need more than
one approver (`approvals: N`) refuses `--yes` (one person); a yes at the terminal counts
as one and the others come through the control channel (`console.engine.steering`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from console.config import FleetConfig
    from console.engine import Engine
    from console.engine.api import Approver, GateRequest, ReleaseControl


def headless_approver(yes: bool, operator: str, stream: TextIO | None = None, *,
                      engine: Engine | None = None,
                      control: ReleaseControl | None = None) -> Approver:
    """The `Approver` of a headless run: `--yes` approves; a terminal asks; else stop.

    Who approved is the identity the cluster confirms (SelfSubjectReview, as the control
    channel records it), the local name beside it. A gate that needs more than one
    approver (`approvals: N`) counts the terminal's yes as one and waits for the others
    through the control channel (`control`); `run` refuses `--yes` for such a strategy.
    `operator` is the local name: the session's (`console.session.Session.operator`)."""
    from console.engine import GateAnswer, GateDecision
    out = stream or sys.stderr

    def identity(request: GateRequest) -> tuple[str, bool]:
        """(the cluster's name for these credentials, confirmed) on the cluster the
        release's control channel lives on - where `control` asks too, so the same
        person is one approver however they answer; the local name, unconfirmed, when
        it cannot say."""
        if engine is None:
            return operator, False
        from console.engine.steering_client import whoami
        # `here`: this process's own (a shard's results include the other shards').
        reached = sorted(request.here or (r.cluster for r in request.results)) or \
            list(request.next_clusters)
        run = engine.running(request.release_id) or engine.run_holding(reached[0])
        return whoami(engine, (run.naming_cluster() if run is not None else None)
                      or reached[0])

    def label(who: str, confirmed: bool, how: str) -> str:
        local = operator
        if not confirmed:
            return f"{local} ({how}, not confirmed by the cluster)"
        return f"{who} ({local}, {how})" if local and local != who else f"{who} ({how})"

    def approve(request: GateRequest) -> GateAnswer:
        if yes:
            who, confirmed = identity(request)
            return GateAnswer(GateDecision.APPROVE, by=label(who, confirmed, "--yes"))
        if not sys.stdin.isatty():
            print(f"release-console: the release waits for approval before wave "
                  f"{request.next_wave + 1} ({', '.join(request.next_clusters)}); no terminal "
                  "to ask and no --yes: stopping here", file=out, flush=True)
            return GateAnswer(GateDecision.REJECT, by="no approver (headless without --yes)")
        done = ", ".join(f"{r.cluster} {r.outcome}" for r in request.results) or "nothing"
        if request.unlisted:
            done += (f" - and {request.unlisted} more not listed (each shard names up to 200 "
                     "clusters that did not end healthy; the gate line's counts include them)")
        print(f"wave {request.finished_wave + 1} finished: {done}", file=out, flush=True)
        who, confirmed = identity(request)
        by = label(who, confirmed, "at the terminal")
        while True:
            print(f"start wave {request.next_wave + 1} ({', '.join(request.next_clusters)})? "
                  "[y]es / [n]o, stop here / [a]bort / abort and [r]oll back: ",
                  end="", file=out, flush=True)
            answer = sys.stdin.readline().strip().lower()
            if answer in ("y", "yes"):
                if request.approvals > 1:
                    return more_approvals(request, who if confirmed else None, by)
                return GateAnswer(GateDecision.APPROVE, by=by)
            if answer in ("n", "no", ""):
                return GateAnswer(GateDecision.REJECT, by=by)
            if answer in ("a", "abort"):
                return GateAnswer(GateDecision.ABORT, by=by)
            if answer in ("r", "rollback"):
                return GateAnswer(GateDecision.ABORT, rollback=True, by=by)

    def more_approvals(request: GateRequest, who: str | None, by: str) -> GateAnswer:
        """The terminal said yes (`who`: its confirmed identity, None: unconfirmed, not
        counted); the other approvals come through the control channel."""
        need = max(1, request.approvals)
        approvers = [who] if who else []
        labels = [by] if who else []
        if control is not None and who:
            control.note_approval(request.next_wave, who)
        if control is None:
            return GateAnswer(GateDecision.REJECT, by=f"{by}: {need} approvals needed and no "
                              "control channel to give the others")
        print(f"{len(approvers)} of {need} approvals"
              + ("" if who else f" ({by}: only an identity the cluster confirms counts)")
              + f"; the others through `release-console control {request.release_id} "
              "approve`", file=out, flush=True)
        while True:
            answer = control.gate_answer(None, request.next_wave)
            if answer is None:
                if control.aborted:
                    return GateAnswer(GateDecision.ABORT, control.rollback_on_abort,
                                      by="aborted while waiting")
                continue
            if GateDecision(answer.decision) is not GateDecision.APPROVE:
                return answer
            if answer.by not in approvers:
                approvers.append(answer.by)
                labels.append(answer.by)
            if len(approvers) >= need:
                return GateAnswer(GateDecision.APPROVE, by=", ".join(labels))

    return approve


def refuse_yes_for_approvals(config: FleetConfig, plan: Any) -> None:
    """`--yes` is one person: a strategy whose gates need more distinct approvers
    (`approvals: N`) is refused with it (exit 2) rather than passed by one name."""
    from console.errors import ValidationError
    strategy = config.strategies.get(plan.strategy)
    if strategy is None or strategy.approvals <= 1 or \
            not any(wave.gate_before for wave in plan.waves):
        return
    raise ValidationError(
        f"{config.path}:{strategy.line}: strategy {strategy.name!r} needs "
        f"{strategy.approvals} distinct approvers at each gate (approvals: "
        f"{strategy.approvals}); --yes is one person. Run with --wait-for-approval and "
        f"approve through `release-console control RELEASE_ID approve` (each approver "
        "with their own credentials), or at a terminal, where your yes counts as one")
