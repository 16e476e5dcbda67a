"""Reading the ledger's record files: releases with their outcomes, filtered cheaply.

A big ledger is mostly `cluster` and `touch` lines; queries skip the lines they do not
need by their byte prefix (the ledger writes `type` first) before parsing any JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from console.events import Outcome
from console.history.records import (
    CLUSTER_PREFIX, END_PREFIX, HISTORY_DIR, RELEASE_PREFIX, TOUCH_PREFIX, ClusterOutcome,
    Release, decode, parse_since, raw_lines, release_from, with_clusters,
)


def record_files(root: Path, app: str) -> list[Path]:
    """The record files of `app` in the ledger at `root` ("*": every app's)."""
    if app == "*":
        return sorted((root / HISTORY_DIR).glob("*.jsonl"))
    return [root / HISTORY_DIR / f"{app}.jsonl"]


def records(files: Iterable[Path], prefixes: tuple[bytes, ...] = ()) -> Iterator[dict[str, Any]]:
    """The parseable records in file order; only lines starting with `prefixes` if given.

    The prefixes (`{"type":"release"` ...) skip parsing the lines a query does not
    need: the ledger writes `type` first.
    """
    for line in raw_lines(files):
        if prefixes and not line.startswith(prefixes):
            continue
        rec = decode(line)
        if rec is not None:
            yield rec


def find_release_line(files: Iterable[Path], release_id: str) -> dict[str, Any] | None:
    """The `release` line of `release_id`, if any."""
    for rec in records(files, prefixes=(RELEASE_PREFIX,)):
        if rec.get("id") == release_id:
            return rec
    return None


def open_release_lines(files: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """The `release` lines without an `end` line, by id (parses only those two types).

    A sharded release (`deploy --shard K/N`) has a `release` and an `end` line per
    shard: it is open while one shard's is; an `end` without a shard (reconcile's)
    closes every shard."""
    started: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records(files, prefixes=(RELEASE_PREFIX, END_PREFIX)):
        if rec.get("type") == "release":
            started[(str(rec.get("id")), str(rec.get("shard") or ""))] = rec
        elif rec.get("shard"):
            started.pop((str(rec.get("release")), str(rec["shard"])), None)
        else:
            rid = str(rec.get("release"))
            for key in [k for k in started if k[0] == rid]:
                del started[key]
    return {rid: rec for (rid, _), rec in started.items()}


# How bad an ending is, to end a sharded release as its worst shard did.
_SEVERITY = {Outcome.OK: 0, Outcome.STOPPED: 1, Outcome.PREFLIGHT_FAILED: 2, Outcome.ABORTED: 3,
             Outcome.INTERRUPTED: 4, Outcome.FAILED: 5}


def _merge_shard(entry: dict[str, Any], rec: dict[str, Any]) -> None:
    """Another shard's `release` line of the same release: one release of all targets."""
    first = entry["rec"]
    entry["rec"] = {**first,
                    "targets": list(dict.fromkeys([*(first.get("targets") or ()),
                                                   *(rec.get("targets") or ())])),
                    "start": min(str(first.get("start") or ""), str(rec.get("start") or ""))
                    or first.get("start")}


def _shards_end(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The end of a sharded release: once every shard ended, the worst of their ends."""
    ends = entry["ends"]
    label = str(entry["rec"].get("shard") or "")
    try:
        total = int(label.split("/")[1])
    except (IndexError, ValueError):
        return None
    if len(ends) < total:
        return None
    worst = max(ends.values(), key=lambda e: _SEVERITY.get(str(e.get("outcome")), 4))
    codes = [e.get("exit_code") for e in ends.values() if e.get("exit_code") is not None]
    return {**worst, "end": max(str(e.get("end") or "") for e in ends.values()),
            "exit_code": max(codes) if codes else None}


def releases(files: Iterable[Path], *, cluster: str | None = None, since: str | None = None,
             ids: set[str] | None = None) -> list[Release]:
    """Releases and manual actions in `files`, oldest first, optionally filtered.

    `since` is anything `parse_since` takes (`7d`, `2026-11-01`, an ISO time); `cluster`
    keeps releases that targeted it and only that cluster's outcome; `ids` keeps only
    those releases (and reads their `touch` lines, which reconcile needs).
    """
    since = parse_since(since) if since else None
    builders: dict[str, dict[str, Any]] = {}
    needles = tuple(f'"{rid}"'.encode() for rid in ids) if ids is not None else ()
    # What can be skipped unparsed (most of a big ledger): other clusters' lines, and
    # `touch` lines unless reconciling (only unfinished releases need them).
    mine = f'"cluster":{json.dumps(cluster)}'.encode() if cluster is not None else b""
    for line in raw_lines(files):
        if ids is not None and not any(needle in line for needle in needles):
            continue
        if line.startswith(TOUCH_PREFIX):
            if ids is None or (mine and mine not in line):
                continue
        elif mine and line.startswith(CLUSTER_PREFIX) and mine not in line:
            continue
        rec = decode(line)
        if rec is None:
            continue
        kind = rec.get("type")
        if kind == "release":
            if ids is not None and rec.get("id") not in ids:
                continue
            known = builders.get(rec["id"])
            if known is not None and rec.get("shard") and known["rec"].get("shard"):
                _merge_shard(known, rec)
                continue
            builders[rec["id"]] = {"rec": rec, "clusters": {}, "touched": [], "end": None,
                                   "ends": {}}
            continue
        entry = builders.get(rec.get("release", ""))
        if entry is None:
            continue
        if kind == "cluster":
            entry["clusters"][rec["cluster"]] = rec
        elif kind == "touch":
            entry["touched"].append(rec["cluster"])
        elif kind == "end" and rec.get("shard"):
            entry["ends"][str(rec["shard"])] = rec
        elif kind == "end":
            entry["end"] = rec
    out = []
    for entry in builders.values():
        release = release_from(entry["rec"], map(ClusterOutcome.from_line,
                                                 entry["clusters"].values()),
                               entry["end"] or (_shards_end(entry) if entry["ends"] else None),
                               entry["touched"])
        if since and (release.end or release.start) < since:
            continue
        if cluster is not None:
            if cluster not in release.targets and release.outcome_of(cluster) is None:
                continue
            release = with_clusters(release, tuple(
                c for c in release.clusters if c.cluster == cluster))
        out.append(release)
    return out


__all__ = ["find_release_line", "open_release_lines", "record_files", "records", "releases"]
