"""`release-console status [--json]`: the version matrix of the app across the fleet.

Per cluster: the live version (read from the cluster - every cluster concurrently, each
call waited for as long as a release's own calls (10 s), so one that does not answer is
shown as unreachable and holds up the others no longer than that; a big fleet's reads are
dealt over a few forked processes, `console.cli.status_workers`), the version the release
ledger (`console.history`) last recorded there, the last known-good version, and when and
by whom it was recorded. DRIFT marks a cluster whose live version differs from the
ledger's (someone changed it by hand, e.g. `kubectl set image`). For an app shipped as a
Helm chart the live column adds Helm's revision, chart version, the chart's app version
and release status (`--json`: `helm_revision`, `chart_version`, `app_version`,
`helm_status`), and a Helm revision other than the one the ledger recorded is drift too (a
`helm upgrade` or `helm rollback` made outside the console). A pinned release records the
digest its tag was resolved to: the DIGEST column shows the running one (short; `-` for a
plain tag), and the same version on other bits than the ledger's digest is digest drift
(`--json`: `digest`, `recorded_digest`, `digest_drift`). Exit 0 when every cluster was
read, whatever the versions; exit 4 when any cluster could not be read (the others are
still shown), so a script or CI job never takes a partial matrix for the whole truth. A
ledger that cannot be opened is a warning (the live versions are still shown).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import fields
from typing import Any

from console.cli.deploy_cmd import load_config
from console.cli.flags import add_json
from console.errors import UserError

DRIFT = "DRIFT"
# The exit code when at least one cluster could not be read (see console.cli's list).
UNREADABLE = 4


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`status`'s own arguments (its help texts are in `console.cli.commands`)."""
    add_json(parser, "one JSON document")


def matrix_rows(statuses: list[Any], ledger: Future[Any]) -> tuple[dict[str, Any], str | None]:
    """The ledger's matrix rows by cluster for `statuses`, and a warning when the ledger
    could not be read. `ledger`: the ledger `open_ledger` opens."""
    live = {s.cluster: s.version if s.reachable else None for s in statuses}
    helm = {s.cluster: s.helm_revision for s in statuses if s.reachable}
    digests = {s.cluster: s.digest for s in statuses if s.reachable}
    try:
        opened = ledger.result()
    except UserError as exc:
        return {}, f"history unavailable: {exc}"
    try:
        return {row.cluster: row for row in opened.matrix(live, helm, digests)}, None
    finally:
        opened.close()


def open_ledger(config: Any) -> Future[Any]:
    """The app's ledger, being opened in a thread of its own while the clusters are read
    (disk and Git work that need not wait for the network)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status-ledger")
    try:
        return pool.submit(_opened_ledger, config)
    finally:
        pool.shutdown(wait=False)


def _close_opened(ledger: Future[Any]) -> None:
    """Close the ledger once opened (nothing read it: the clusters' reading failed)."""
    if ledger.exception() is None:
        ledger.result().close()


def _opened_ledger(config: Any) -> Any:
    """The ledger, its latest-version index brought up to date (built on a first run,
    read from disk later): the matrix with the live versions then only looks up."""
    from console.history import Ledger
    ledger = Ledger.for_config(config)
    try:
        ledger.matrix({c.id: None for c in config.clusters})
    except BaseException:
        ledger.close()
        raise
    return ledger


def run(args: argparse.Namespace) -> int:
    """Print the version matrix; 0, or `UNREADABLE` when a cluster could not be read."""
    from console.engine.collector import pace_for_releases
    # Before the imports and the fleet file, whose allocations alone made ~190 young
    # collections; a reading of 1,000 clusters keeps a client per cluster alive as a
    # release does (collector passes: ~150 ms of CPU for 1,000 reads in one process
    # at the default pace, ~100 ms at this one; gc.callbacks, 2026-12-02).
    pace_for_releases()
    from console.cli.output import out
    from console.engine import REQUEST_TIMEOUT, Engine
    from console.cli.status_workers import FleetReading
    config = load_config(args)
    # Exit 4 is a verdict scripts act on, so a cluster is unreadable only once a call waited
    # as long as a release's own calls do (REQUEST_TIMEOUT), not the engine's 3 s for the
    # console's refreshes: Kubernetes' SLO lets a namespaced LIST (Helm's release records)
    # take up to 5 s at p99, and under load (20-32 on 2 cores) a simulated cluster nobody
    # had touched answered later than 3 s - `status` called it unreachable.
    engine = Engine(config, status_timeout=REQUEST_TIMEOUT)
    # Plain kubeconfigs (a server, its CA, a token) read without the client library,
    # whose import alone was ~0.25 s of CPU of this command's start.
    engine.plain_clients = True
    # A big fleet's reads are dealt over processes forked now, before the ledger's thread.
    reading = FleetReading(engine)
    try:
        ledger = open_ledger(config)
    except BaseException:
        reading.close()
        raise
    try:
        statuses = reading.statuses()
    except BaseException:
        ledger.add_done_callback(_close_opened)
        raise
    finally:
        engine.close()
    rows, warning = matrix_rows(statuses, ledger)
    if warning:
        print(f"release-console: warning: {warning}", file=sys.stderr, flush=True)
    if args.json:
        clusters = []
        for s in statuses:
            entry = {f.name: getattr(s, f.name) for f in fields(s)}  # flat: no asdict
            row = rows.get(s.cluster)
            entry.update({
                "recorded": row.recorded if row else None,
                "recorded_at": row.recorded_at if row else None,
                "recorded_by": row.recorded_by if row else None,
                "recorded_release": row.recorded_release if row else None,
                "last_good": row.last_good if row else None,
                "last_good_at": row.last_good_at if row else None,
                "recorded_helm_revision": row.recorded_helm_revision if row else None,
                "recorded_digest": row.recorded_digest if row else None,
                "digest_drift": bool(row and row.digest_drift),
                "drift": bool(row and row.drift)})
            clusters.append(entry)
        out(json.dumps({"app": config.app.name, "clusters": clusters,
                        "drift": [c["cluster"] for c in clusters if c["drift"]],
                        "warning": warning,
                        "unreachable": [s.cluster for s in statuses if not s.reachable]},
                       indent=2))
        return _exit_code(statuses)
    table = [("CLUSTER", "LIVE", "RECORDED", "LAST-GOOD", "WHEN", "BY", "READY", "DIGEST",
              "STATE")]
    for s in statuses:
        row = rows.get(s.cluster)
        recorded = (row.recorded if row else None) or "-"
        good = (row.last_good if row else None) or "-"
        when = _short_time(row.recorded_at) if row and row.recorded_at else "-"
        who = (row.recorded_by if row else None) or "-"
        if not s.reachable:
            table.append((s.cluster, "?", recorded, good, when, who, "-", "-",
                          f"unreachable: {s.error}"))
            continue
        ready = f"{s.ready}/{s.desired}" if s.version else "-"
        if not s.version:
            state = "not deployed"
        elif s.ready < s.desired:
            state = "degraded"
        else:
            state = "ok"
        if row and row.drift:
            said = recorded
            if row.digest_drift:
                said = (f"{recorded}@{_short_digest(row.recorded_digest)}, live runs "
                        f"{_short_digest(s.digest) if s.digest else 'the unpinned tag'}")
            elif row.recorded == s.version and row.recorded_helm_revision is not None:
                said = f"Helm revision {row.recorded_helm_revision}, live {s.helm_revision}"
            state = f"{DRIFT} (ledger says {said})" + ("" if state == "ok" else f", {state}")
        if (s.helm_status or "").startswith("pending-"):
            # A helm killed mid-operation: Helm refuses the next release until recovered.
            state = (f"NEEDS ATTENTION: helm release {s.helm_status} (a helm operation did "
                     f"not finish; `release-console check` says how to recover), {state}")
        live = s.version or "-"
        if s.helm_revision is not None:
            # Apps shipped as a chart: Helm's revision, chart and app version, release status.
            app = f", app {s.app_version}" if s.app_version else ""
            live += (f" (helm r{s.helm_revision}, chart {s.chart_version}{app}, "
                     f"{s.helm_status})")
        digest = _short_digest(s.digest) if s.digest else "-"
        table.append((s.cluster, live, recorded, good, when, who, ready, digest, state))
    widths = [max(len(r[i]) for r in table) for i in range(8)]
    for r in table:
        if not out("  ".join([*(c.ljust(w) for c, w in zip(r[:8], widths)), r[8]]).rstrip()):
            break   # the reader has gone (`| head`): the exit code still counts
    drifted = [c for c, row in rows.items() if row.drift]
    if drifted:
        what = "a version" if config.app.chart is None else "a version or Helm revision"
        out(f"{DRIFT}: {', '.join(drifted)} run(s) {what} the ledger did not record "
            "(changed outside release-console)")
    unreachable = [s.cluster for s in statuses if not s.reachable]
    if unreachable:
        print(f"release-console: {len(unreachable)} cluster(s) could not be read: "
              f"{', '.join(unreachable)} (exit {UNREADABLE})", file=sys.stderr, flush=True)
    return _exit_code(statuses)


def _exit_code(statuses: list[Any]) -> int:
    return UNREADABLE if any(not s.reachable for s in statuses) else 0


def _short_digest(digest: str | None) -> str:
    """`sha256:3f2a...` -> `sha256:3f2a9c1d4e5f` (enough to tell images apart; --json has
    it all)."""
    return (digest or "?")[:19]


def _short_time(iso: str) -> str:
    """`2026-11-25T14:02:11Z` -> `2026-11-25T14:02Z` (the full time is in --json)."""
    return iso[:16] + "Z"
