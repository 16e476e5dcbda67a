"""The one vocabulary the engine speaks.

Every consumer - the TUI, the headless printer, the history ledger, the notifiers -
listens to the same `Event` stream. An event is a frozen record: what happened
(`kind`), to which release and (optionally) cluster, a human message and a small
JSON-able `data` mapping whose keys are documented per kind below. `digest` is the
`sha256:...` the release pinned its tag to (None: `--no-pin`, or not known). Secrets and control
characters never go into an event: `console.redact` scrubs the message and data when
the event is made, so every consumer gets clean text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from console.redact import clean


class Outcome(StrEnum):
    """How a cluster or a release ended; the values are what the ledger, `--json`
    and JUnit have always written, so `Outcome.HEALTHY == "healthy"`.

    A cluster ends HEALTHY, FAILED, ROLLED_BACK, SKIPPED or INTERRUPTED (the ledger
    records SKIPPED_BY_OPERATOR for a cluster an operator skipped: its engine result is
    SKIPPED); a release ends OK, FAILED, STOPPED (rejected at a gate), ABORTED or
    PREFLIGHT_FAILED - in the ledger also INTERRUPTED (closed after a killed console) or
    NOT_STARTED (its start could not be committed, so it touched nothing).
    """

    # a cluster
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    SKIPPED_BY_OPERATOR = "skipped_by_operator"
    # a release (FAILED is shared)
    OK = "ok"
    STOPPED = "stopped"
    ABORTED = "aborted"
    PREFLIGHT_FAILED = "preflight_failed"
    NOT_STARTED = "not_started"


# A cluster outcome that counts against the failure budget.
FAILURE_OUTCOMES = frozenset({Outcome.FAILED, Outcome.ROLLED_BACK})


class Kind(str, Enum):
    """What happened. The `data` keys each kind carries are listed beside it."""

    RELEASE_PLANNED = "release_planned"      # app, version, image, digest, strategy, targets, waves, operator
    PREFLIGHT_STARTED = "preflight_started"  # checks
    PREFLIGHT_RESULT = "preflight_result"    # check, ok, detail (one per cluster and check)
    PREFLIGHT_FINISHED = "preflight_finished"  # ok, failures
    RELEASE_STARTED = "release_started"      # version, targets, digest (recorded before any cluster is touched)
    WAVE_STARTED = "wave_started"            # wave, clusters
    WAVE_BAKING = "wave_baking"              # wave, seconds, until (epoch s), clusters
    WAVE_BAKED = "wave_baked"                # wave, ok, failed (clusters), seconds, completed
    WAVE_FINISHED = "wave_finished"          # wave, healthy, failed
    GATE_WAITING = "gate_waiting"            # wave (the next one), clusters
    GATE_DECIDED = "gate_decided"            # decision (approve|reject|abort), by, rollback
    PAUSED = "paused"                        # by
    RESUMED = "resumed"                      # by
    STEERED = "steered"                      # action, by, (cluster), detail: a control action taken
    CLUSTER_STARTED = "cluster_started"      # from_version, to_version, wave, digest
    CLUSTER_PACED = "cluster_paced"          # wave, until (epoch s: a start slot frees), max_starts, window
    CLUSTER_PROGRESS = "cluster_progress"    # desired, updated, ready, available, phase
    CLUSTER_HEALTHY = "cluster_healthy"      # version, duration, digest
    CLUSTER_FAILED = "cluster_failed"        # error, duration
    CLUSTER_ROLLING_BACK = "cluster_rolling_back"  # from_version, to_version
    CLUSTER_ROLLED_BACK = "cluster_rolled_back"    # version, ok, error, digest
    CLUSTER_SKIPPED = "cluster_skipped"      # reason
    CLUSTER_UNREACHABLE = "cluster_unreachable"  # error
    RELEASE_FINISHED = "release_finished"    # outcome (ok|failed|stopped|aborted), exit_code, summary


@dataclass(frozen=True)
class Event:
    """One thing that happened during a release (or a manual action)."""

    kind: Kind
    release_id: str
    cluster: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        # Here, once, for every consumer: no secret or control character gets further.
        message, data = clean((self.message, self.data))
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "data", data)

    def to_json(self) -> dict[str, Any]:
        """The event as one JSON object (the `--json` line format, stable API)."""
        out: dict[str, Any] = {"ts": round(self.ts, 3), "kind": self.kind.value,
                               "release": self.release_id}
        if self.cluster is not None:
            out["cluster"] = self.cluster
        if self.message:
            out["message"] = self.message
        out.update(self.data)
        return out


Listener = Callable[[Event], None]
