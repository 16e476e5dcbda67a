"""The release ledger: a Git repository that records what ran where, since when, by whom.

The ledger is its own Git repository (never the project's): by default
`.release-history/` beside the `clusters.yaml` in use, else `app.history.path`. It is
created (or cloned from `app.history.remote`) when absent. It holds:

- `history/<app>.jsonl` - one JSON object per line, append-only (`records`);
- `deployment-history.log` - the original design's human line per release:
  `2026-11-25T19:40:00Z - user-service - 3f2a9c1-42 - staging,prod-eu - ok by alice`;
- `.gitattributes` - `merge=union` for both, so two consoles' appends merge cleanly.

Crash safety: see `console.history.ledger`.

Using it: every way a release starts opens a `console.session.Session` on its engine,
which opens `Ledger.for_config(config)` and attaches `EventLedger(ledger)` as the
engine's first listener::

    with Session(config, engine) as session:     # the ledger and the notifier attached,
        # what a stopped console left open closed (session.reconciled), who acts named
        engine.run(replace(request, operator=session.operator), approver)
        session.ledger.last_good("prod-eu")      # reads: matrix(live), history(...), ...
    # on exit: every record committed (and pushed)

The package: `records` (record types, the JSONL line format, times), `reading`
(queries over the record files), `repository` (Git: open, commit, push, merge),
`latest` (the latest-version index), `ledger` (the `Ledger`), `queries` (its reading
side: history, unfinished releases, the version matrix), `reconcile` (closing
what a stopped console left open), `listener` (the engine listener), `operator` (who
acts), `remote_auth` (the remote's credentials, kept out of `.git/config`, argv and
files).
"""

from __future__ import annotations

from console.history.latest import LatestIndex
from console.history.ledger import Ledger
from console.history.listener import EventLedger
from console.history.operator import Operator, default_operator
from console.history.records import (
    HISTORY_DIR, HUMAN_LOG, SCHEMA, ClusterOutcome, HistoryError, MatrixRow, PushResult,
    Release, parse_since, utc_now,
)

__all__ = ["HISTORY_DIR", "HUMAN_LOG", "SCHEMA", "ClusterOutcome", "EventLedger",
           "HistoryError", "LatestIndex", "Ledger", "MatrixRow", "Operator", "PushResult",
           "Release", "default_operator", "parse_since", "utc_now"]
