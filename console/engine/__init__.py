"""The release engine: runs a plan against the fleet and says what happened, as events.

`Engine.run(request, approver, control)` is one release; `rollback`, `rollback_release`,
`status` and `detail` are the manual actions and queries. The engine never imports
Textual; the TUI runs it in a child process (`console.engine.remote`, its
child side `console.engine.host`).

Modules: `api` (requests, answers, results, `Outcome`, `ReleaseControl`; loads no
Kubernetes client), `core` (`Engine`), `waves` (the wave runner), `run_state` (the
state of a running release), `deploy` (one cluster's rollout), `bake` (watching a
healthy wave for its bake time), `pacing` (at most N starts in a sliding window),
`pinning` (the tag resolved to its digest at plan time), `rollbacks` (automatic and
manual rollbacks), `rollback_choice` (where a manual rollback goes, from the ledger),
`action_lease` (the release lease a manual action holds), `checks` (pre-flight and the
release lock), `queries` (status, detail, lease holders, reconcile), `shards` (one
release as N shards: global waves, gates and budget), `shard_gates` (a sharded
release's gates), `shard_rights` (the rights a shard needs on the board's cluster), `steering` (the listening end of
the control channel), `steering_rules` (what a steering action may act on; clusters
left out), `steering_client` (the asking end: `control`, `follow`), `steering_acks` (the
asking end's wait for the answers), `identities` (the
person as a cluster confirms it), `follow` (a release another process runs, read from
outside), `remote` and `host` (the engine in a child process: the console's side, the
child's).

The API types are imported here eagerly; `Engine` and the timeouts only when first asked
for, so `import console.engine.api` never loads the Kubernetes client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from console.engine.api import (FAILURE_OUTCOMES, Approver, ClusterDetail, ClusterResult,
                                ClusterStatus, ControlChange, EventInfo, GateAnswer,
                                GateDecision, GateRequest, Outcome, PodInfo, ReleaseControl,
                                ReleaseRequest, ReleaseResult, new_release_id)

if TYPE_CHECKING:
    from console.engine.core import (FAIL_FAST_GRACE, REQUEST_TIMEOUT, STATUS_TIMEOUT,
                                     UNREACHABLE_GRACE, Engine)

_LAZY = {"Engine", "FAIL_FAST_GRACE", "REQUEST_TIMEOUT", "STATUS_TIMEOUT",
         "UNREACHABLE_GRACE"}

__all__ = ["FAILURE_OUTCOMES", "Approver", "ClusterDetail", "ClusterResult", "ClusterStatus",
           "ControlChange", "EventInfo", "GateAnswer", "GateDecision", "GateRequest", "Outcome", "PodInfo",
           "ReleaseControl", "ReleaseRequest", "ReleaseResult", "new_release_id",
           *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    # PEP 562: `Engine` loads the Kubernetes client, so only on first use.
    if name in _LAZY:
        from console.engine import core
        return getattr(core, name)
    raise AttributeError(f"module 'console.engine' has no attribute {name!r}")
