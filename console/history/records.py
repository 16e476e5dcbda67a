"""Ledger record types, the JSONL line format, and ledger times.

Record lines of `history/<app>.jsonl` (`"type"` first, says which; then `"v"`, the
schema version of the line):

- `release`: id, app, kind (`release` or a manual action such as `rollback`), version,
  image, strategy, targets, operator, operator_email, start, host and pid (of the
  console, so another console knows whether it still runs), of_release (for actions),
  digest (the `sha256:...` the tag was resolved to at plan time: every cluster ran it;
  absent for `--no-pin`), freeze_override (reason, by - the name the cluster confirmed -, confirmed, windows: released through open freeze windows).
- `touch`: a cluster is about to be changed (release, cluster, from_version, to_version).
- `cluster`: one cluster's outcome (release, cluster, outcome healthy|failed|rolled_back|
  skipped|interrupted|skipped_by_operator (`OUTCOMES`), from_version, to_version,
  version = what the cluster runs after it (null: unknown or unchanged), good =
  `version` was seen healthy, duration, error
  (scrubbed of secrets), rolled_back_to, operator, ts, reconciled, digest = the
  `sha256:...` that `version` is pinned to there, when known). A cluster may get
  more than one `cluster` line in a release (failed, then rolled_back): the last wins.
- `drill`: a rollback drill on a local fleet (`release-console drill`): id, app, tag,
  strategy, fleet (sim|lab), operator, start, end, rollout_timeout, ok, exit_code and
  clusters (cluster, role, baseline, outcome, detect_s, rollback_s, ok, error). No
  release, matrix or `status` query reads these lines: a drill never counts as a release.
- `bake`: one wave's bake time (issue 14): release, wave (0-based), seconds, ok,
  failed (clusters that degraded during it and were failed), completed (the whole time
  was watched; false when an abort or a spent failure budget ended it), start, end.
- `end`: release, outcome (ok|failed|stopped|aborted|preflight_failed|interrupted|not_started),
  exit_code, end. `not_started`: the release's start could not be committed, so it was
  refused before touching any cluster.

Schema versions: 1 - only `release` lines carried `"v": 1`, other lines none; 2 - every
line carries `"v"`, and `not_started` ends exist. Readers take a line without `"v"` as
version 1, and read the fields they know of any version (changes only add fields), so
ledgers written by older consoles stay readable and an older console can read a newer
ledger. Outcomes are the values of `console.events.Outcome`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from console.errors import UserError, ValidationError
from console.events import Outcome

SCHEMA = 2  # of the record lines (see the module docstring)
HISTORY_DIR = "history"
HUMAN_LOG = "deployment-history.log"
# The outcomes a `cluster` line may record (the strings the ledger always wrote).
OUTCOMES = frozenset({Outcome.HEALTHY, Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.SKIPPED,
                      Outcome.INTERRUPTED, Outcome.SKIPPED_BY_OPERATOR})
RELEASE_PREFIX = b'{"type":"release"'
END_PREFIX = b'{"type":"end"'
TOUCH_PREFIX = b'{"type":"touch"'
CLUSTER_PREFIX = b'{"type":"cluster"'
DRILL_PREFIX = b'{"type":"drill"'
# Who steered a running release (pause, approve, skip...): never read by the matrix.
STEER_PREFIX = b'{"type":"steer"'
BAKE_PREFIX = b'{"type":"bake"'


class HistoryError(UserError):
    """The ledger cannot be opened or written (the message names the path)."""


# --- time ------------------------------------------------------------------------------

def utc_now() -> str:
    """Now as the ledger writes times: ISO 8601 UTC to the second, `...Z`."""
    return iso_time(time.time())


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> str:
    """`--since` as a ledger time: `30m`, `6h`, `7d`, `2w`, `2026-11-01` or an ISO time.

    Raises ValidationError naming the flag for anything else.
    """
    now = time.time() if now is None else now
    match = _RELATIVE.match(text)
    if match:
        return iso_time(now - int(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"--since {text!r}: expected a duration like 30m, 6h, 7d, 2w or a date like "
            "2026-11-01 or 2026-11-01T09:30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return iso_time(moment.timestamp())



@dataclass(frozen=True)
class ClusterOutcome:
    """One cluster's result within a release (or manual action)."""

    release_id: str
    cluster: str
    outcome: str
    from_version: str | None
    to_version: str | None
    version: str | None      # what the cluster runs after this record; None: unknown
    good: bool               # `version` was seen healthy
    duration: float | None
    error: str
    rolled_back_to: str | None
    operator: str
    ts: str
    reconciled: bool = False
    digest: str | None = None    # the digest `version` is pinned to there, when known

    @classmethod
    def from_line(cls, rec: Mapping[str, Any]) -> ClusterOutcome:
        """Build from a `cluster` record line."""
        return cls(release_id=rec["release"], cluster=rec["cluster"], outcome=rec["outcome"],
                   from_version=rec.get("from_version"), to_version=rec.get("to_version"),
                   version=rec.get("version"), good=bool(rec.get("good")),
                   duration=rec.get("duration"), error=rec.get("error") or "",
                   rolled_back_to=rec.get("rolled_back_to"), operator=rec.get("operator", ""),
                   ts=rec.get("ts", ""), reconciled=bool(rec.get("reconciled")),
                   digest=rec.get("digest"))


@dataclass(frozen=True)
class Release:
    """A release (or manual action) as the ledger knows it."""

    id: str
    app: str
    kind: str                      # "release" or a manual action: "rollback"
    version: str
    image: str
    strategy: str
    targets: tuple[str, ...]
    operator: str
    start: str
    end: str | None = None
    outcome: str | None = None     # None while unfinished
    exit_code: int | None = None
    of_release: str | None = None  # the release a manual action acted on
    clusters: tuple[ClusterOutcome, ...] = ()   # the last outcome per cluster
    # Clusters that got a `touch` line (read for `unfinished()` and `reconcile()` only).
    touched: tuple[str, ...] = ()
    # Released through open freeze windows: {reason, by, windows} (None: no override).
    freeze_override: Mapping[str, Any] | None = None
    digest: str | None = None      # the digest the tag was pinned to (None: unpinned)

    @property
    def finished(self) -> bool:
        """Whether the release has an `end` record."""
        return self.end is not None

    def outcome_of(self, cluster: str) -> ClusterOutcome | None:
        """The last recorded outcome for `cluster`, if any."""
        for item in self.clusters:
            if item.cluster == cluster:
                return item
        return None

    def to_json(self) -> dict[str, Any]:
        """The release as one JSON object (the `history --json` line format)."""
        return {"id": self.id, "app": self.app, "kind": self.kind, "version": self.version,
                "image": self.image, "strategy": self.strategy, "targets": list(self.targets),
                "operator": self.operator, "start": self.start, "end": self.end,
                "outcome": self.outcome, "exit_code": self.exit_code,
                "of_release": self.of_release, "digest": self.digest,
                "clusters": [{"cluster": c.cluster, "outcome": c.outcome,
                              "from_version": c.from_version, "to_version": c.to_version,
                              "version": c.version, "good": c.good, "duration": c.duration,
                              "error": c.error, "rolled_back_to": c.rolled_back_to,
                              "ts": c.ts, "reconciled": c.reconciled, "digest": c.digest}
                             for c in self.clusters],
                **({"freeze_override": dict(self.freeze_override)}
                   if self.freeze_override else {})}


@dataclass(frozen=True)
class MatrixRow:
    """One cluster of the version matrix: live vs. ledger."""

    cluster: str
    live: str | None              # read from the cluster; None: unknown/unreachable/absent
    recorded: str | None          # what the ledger says runs there
    recorded_at: str | None
    recorded_by: str | None
    recorded_release: str | None
    last_good: str | None         # the last version recorded healthy there
    last_good_at: str | None
    drift: bool                   # live is known and differs from the ledger
    recorded_helm_revision: int | None = None  # the Helm revision the ledger recorded there
    recorded_digest: str | None = None  # the digest the ledger recorded there
    live_digest: str | None = None      # the digest the cluster runs (None: a tag only)
    digest_drift: bool = False          # both known and different (a re-pushed tag pulled)


@dataclass(frozen=True)
class PushResult:
    """What a push (or sync) did. A failure never loses a commit: it stays local."""

    ok: bool
    pushed: bool
    message: str



def release_from(rec: Mapping[str, Any], clusters: Iterable[ClusterOutcome] = (),
                 end: Mapping[str, Any] | None = None, touched: Sequence[str] = ()) -> Release:
    """A `Release` from its `release` line, its cluster outcomes and its `end` line."""
    return Release(id=rec["id"], app=rec.get("app", ""), kind=rec.get("kind", "release"),
                   version=rec.get("version", ""), image=rec.get("image", ""),
                   strategy=rec.get("strategy", ""), targets=tuple(rec.get("targets") or ()),
                   operator=rec.get("operator", ""), start=rec.get("start", ""),
                   end=end.get("end") if end else None,
                   outcome=end.get("outcome") if end else None,
                   exit_code=end.get("exit_code") if end else None,
                   of_release=rec.get("of_release"), clusters=tuple(clusters),
                   touched=tuple(dict.fromkeys(touched)),
                   freeze_override=rec.get("freeze_override") or None,
                   digest=rec.get("digest"))


def with_clusters(release: Release, clusters: tuple[ClusterOutcome, ...]) -> Release:
    """`release` with only `clusters` as its outcomes."""
    return replace(release, clusters=clusters)


# --- the JSONL file --------------------------------------------------------------------

def encode(rec: Mapping[str, Any]) -> str:
    """One record as its line: compact JSON, `type` first (readers match on the prefix),
    then the schema version."""
    line = {"type": rec["type"], "v": SCHEMA, **rec}
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n"


def write_line(path: Path, line: str) -> None:
    """Append `line` durably: one write, then fsync (the file is created if absent).

    Raises HistoryError naming the file when it cannot be written.
    """
    try:
        created = not path.exists()
        if created:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = line.encode()
            if not created and os.fstat(fd).st_size:
                # A killed writer may have left half a line: start on a fresh one.
                with open(path, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise HistoryError(f"{path}: cannot write the history record: "
                           f"{exc.strerror or exc}") from None


def raw_lines(files: Iterable[Path]) -> Iterator[bytes]:
    """Every complete record line of `files`, in file order (missing files are empty)."""
    for path in files:
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            continue
        with handle:
            for line in handle:
                if line.endswith(b"\n"):   # else half a line from a killed writer
                    yield line


def decode(line: bytes) -> dict[str, Any] | None:
    """The record of one line, or None for a line that is not a JSON object."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


__all__ = ["CLUSTER_PREFIX", "DRILL_PREFIX", "STEER_PREFIX", "END_PREFIX", "HISTORY_DIR", "HUMAN_LOG", "OUTCOMES",
           "RELEASE_PREFIX", "SCHEMA", "TOUCH_PREFIX", "ClusterOutcome", "HistoryError",
           "MatrixRow", "PushResult", "Release", "decode", "encode", "iso_time",
           "parse_since", "raw_lines", "release_from", "utc_now", "with_clusters",
           "write_line"]
