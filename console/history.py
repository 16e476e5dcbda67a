"""The release ledger: a Git repository that records what ran where, since when, by whom.

The ledger is its own Git repository (never the project's): by default
`.release-history/` beside the `clusters.yaml` in use, else `app.history.path`. It is
created (or cloned from `app.history.remote`) when absent. It holds:

- `history/<app>.jsonl` - one JSON object per line, append-only (schema below);
- `deployment-history.log` - the original design's human line per release:
  `2026-11-25T19:40:00Z - user-service - 3f2a9c1-42 - staging,prod-eu - ok by alice`;
- `.gitattributes` - `merge=union` for both, so two consoles' appends merge cleanly.

Record lines (`"type"` says which):

- `release`: id, app, kind (`release` or a manual action such as `rollback`), version,
  image, strategy, targets, operator, operator_email, start, host and pid (of the
  console, so another console knows whether it still runs), of_release (for actions).
- `touch`: a cluster is about to be changed (release, cluster, from_version, to_version).
- `cluster`: one cluster's outcome (release, cluster, outcome healthy|failed|rolled_back|
  skipped|interrupted, from_version, to_version, version = what the cluster runs after
  it (null: unknown or unchanged), good = `version` was seen healthy, duration, error
  (scrubbed of secrets), rolled_back_to, operator, ts, reconciled). A cluster may get
  more than one `cluster` line in a release (failed, then rolled_back): the last wins.
- `end`: release, outcome (ok|failed|stopped|aborted|interrupted), exit_code, end.

Crash safety: every line is written with one `write` and `fsync`ed before the call
returns; the `release` line is committed before `start_release` returns, i.e. before any
cluster is touched; other lines are committed by a background committer that batches
whatever has accumulated (so 200 clusters finishing together cost a few commits, not
200). Lines a killed console left uncommitted are committed when the ledger is next
opened, and `unfinished()` / `reconcile()` close releases that never got an `end` line.
A failed push keeps the commits; the next push (or `sync()`) delivers them.

Using it (the engine attaches `EventLedger(ledger)` as an event listener)::

    ledger = Ledger.for_config(config)           # or Ledger(path, app, remote=...)
    ledger.reconcile_unfinished(read_live)       # at start: close what a crash left open
    engine = Engine(config, listeners=[EventLedger(ledger), ...])
    ledger.matrix(live) / ledger.last_good("prod-eu") / ledger.history(cluster="prod-eu")
    ledger.close()                               # at exit: every record committed

All public methods are thread-safe; two processes on one ledger serialise their Git
work with a lock file under `.git/`.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.errors import UserError, ValidationError
from console.events import Event, Kind

if TYPE_CHECKING:
    import git

    from console.config import FleetConfig

SCHEMA = 1
HISTORY_DIR = "history"
HUMAN_LOG = "deployment-history.log"
ATTRIBUTES = f"{HISTORY_DIR}/*.jsonl merge=union\n{HUMAN_LOG} merge=union\n"
BRANCH = "main"
REMOTE = "origin"
OUTCOMES = ("healthy", "failed", "rolled_back", "skipped", "interrupted")
ERROR_LIMIT = 2000  # characters of error text kept per record
SUBJECT_CLUSTERS = 6  # clusters named in a commit subject before "+N more"
RELEASE_PREFIX = b'{"type":"release"'
END_PREFIX = b'{"type":"end"'
TOUCH_PREFIX = b'{"type":"touch"'
CLUSTER_PREFIX = b'{"type":"cluster"'
REPACK_LOOSE_KIB = 64 * 1024  # loose objects (KiB) past which finishing a release repacks


class HistoryError(UserError):
    """The ledger cannot be opened or written (the message names the path)."""


# --- secrets ---------------------------------------------------------------------------

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Credentials inside URLs: https://user:token@host -> https://***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+(:[^/\s@]*)?@"), r"\1***@"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.S), "***PEM***"),
    (re.compile(r"(?i)\b([\w.-]*(?:token|password|passwd|secret|client-key-data|"
                r"client-certificate-data|certificate-authority-data|api[_-]?key)"
                r"[\"']?\s*[:=]\s*)[\"']?[^\s\"',}]+"), r"\1***"),
    # JWTs (ServiceAccount tokens) and long base64 blobs (kubeconfig data), not hex digests.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"), "***"),
    (re.compile(r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*[g-zG-Z+/])[A-Za-z0-9+/]{60,}={0,2}"),
     "***"),
)


def scrub(text: str | None, limit: int = ERROR_LIMIT) -> str:
    """`text` with tokens, passwords, URL credentials, PEM and base64 blobs masked.

    Used on every error text that goes into the ledger, a commit, a notification or a
    warning; the result is cut to `limit` characters.
    """
    if not text:
        return ""
    out = str(text)
    for pattern, replacement in _SECRET_PATTERNS:
        out = pattern.sub(replacement, out)
    if len(out) > limit:
        out = out[: limit - 3] + "..."
    return out


# --- time ------------------------------------------------------------------------------

def utc_now() -> str:
    """Now as the ledger writes times: ISO 8601 UTC to the second, `...Z`."""
    return _iso(time.time())


def _iso(epoch: float) -> str:
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
        return _iso(now - int(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"--since {text!r}: expected a duration like 30m, 6h, 7d, 2w or a date like "
            "2026-11-01 or 2026-11-01T09:30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _iso(moment.timestamp())


# --- the operator ----------------------------------------------------------------------

@dataclass(frozen=True)
class Operator:
    """Who acts: the commit author of the records."""

    name: str
    email: str

    @classmethod
    def parse(cls, text: str, default: Operator | None = None) -> Operator:
        """`Name <email>` or a bare name; a bare name equal to `default.name` keeps its email."""
        match = re.match(r"^\s*(.*?)\s*<([^>]*)>\s*$", text or "")
        if match and match.group(1):
            return cls(match.group(1), match.group(2))
        name = (text or "").strip()
        if not name:
            return default or default_operator()
        if default is not None and name in (default.name, _login_name()):
            # The person at this terminal: their git identity, not a bare login name.
            return default
        return cls(name, f"{name}@{socket.gethostname()}")


def default_operator(repo: git.Repo | None = None) -> Operator:
    """The operator from git config (`user.name`, `user.email`), else `$USER@host`."""
    name = email = ""
    try:
        import git as gitmodule

        reader = (repo.config_reader() if repo is not None
                  else gitmodule.GitConfigParser(None, read_only=True))
        with reader:
            name = str(reader.get_value("user", "name", "") or "")
            email = str(reader.get_value("user", "email", "") or "")
    except Exception:  # noqa: BLE001 - an unreadable git config just means "use $USER"
        pass
    user = _login_name()
    return Operator(name or user, email or f"{user}@{socket.gethostname()}")


def _login_name() -> str:
    """$USER, else $LOGNAME, else the password database's name, else "unknown"."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    return user


# --- the model -------------------------------------------------------------------------

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

    @classmethod
    def from_line(cls, rec: Mapping[str, Any]) -> ClusterOutcome:
        """Build from a `cluster` record line."""
        return cls(release_id=rec["release"], cluster=rec["cluster"], outcome=rec["outcome"],
                   from_version=rec.get("from_version"), to_version=rec.get("to_version"),
                   version=rec.get("version"), good=bool(rec.get("good")),
                   duration=rec.get("duration"), error=rec.get("error") or "",
                   rolled_back_to=rec.get("rolled_back_to"), operator=rec.get("operator", ""),
                   ts=rec.get("ts", ""), reconciled=bool(rec.get("reconciled")))


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
                "of_release": self.of_release,
                "clusters": [{"cluster": c.cluster, "outcome": c.outcome,
                              "from_version": c.from_version, "to_version": c.to_version,
                              "version": c.version, "good": c.good, "duration": c.duration,
                              "error": c.error, "rolled_back_to": c.rolled_back_to,
                              "ts": c.ts, "reconciled": c.reconciled}
                             for c in self.clusters]}


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


@dataclass(frozen=True)
class PushResult:
    """What a push (or sync) did. A failure never loses a commit: it stays local."""

    ok: bool
    pushed: bool
    message: str


# --- the ledger ------------------------------------------------------------------------

@dataclass
class _Open:
    """In-memory state of a release this process is recording."""

    release: dict[str, Any]
    touched: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)


class Ledger:
    """The Git ledger of one application (see the module docstring)."""

    def __init__(self, path: str | Path, app: str, *, remote: str | None = None,
                 operator: Operator | None = None, git_timeout: float = 30.0) -> None:
        """Open (clone or create) the ledger repository at `path` for `app`.

        `remote` is the URL pushed to (and cloned from when `path` is absent);
        `git_timeout` bounds every network Git call in seconds.
        """
        self.path = Path(path).expanduser().resolve()
        self.app = app
        self.remote = remote
        self.git_timeout = git_timeout
        self._lock = threading.RLock()      # the record file and in-memory state
        self._git_lock = threading.Lock()   # Git work (kept apart so appends never wait on it)
        self._open: dict[str, _Open] = {}
        # Commit subjects (with their author) waiting for the committer.
        self._pending: list[tuple[str, Operator]] = []
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-commit")
        self._commit_error: BaseException | None = None
        self._repack: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._push_queued = False
        self._push_waiters: list[Callable[[PushResult], None]] = []
        self.repo = self._open_repo()
        self.operator = operator or default_operator(self.repo)
        self.file = self.path / HISTORY_DIR / f"{app}.jsonl"
        self.latest = LatestIndex(self.file, self.path / ".git" / "release-console" /
                                  f"{app}.latest.json")
        self._recover()

    @classmethod
    def for_config(cls, config: FleetConfig, **kwargs: Any) -> Ledger:
        """The ledger of `config.app` at `app.history.path` (default `.release-history/`).

        Refuses a path that is (or contains) the project's own directory.
        """
        settings = getattr(config.app, "history", None)
        path = Path(getattr(settings, "path", None) or config.path.parent / ".release-history")
        if not path.is_absolute():
            path = config.path.parent / path
        project = config.path.parent.resolve()
        resolved = path.expanduser().resolve()
        if resolved == project or resolved in project.parents:
            raise HistoryError(f"{config.path}: app.history.path: {path} is the project's "
                               "directory; the ledger needs a directory of its own")
        return cls(resolved, config.app.name, remote=getattr(settings, "remote", None),
                   **kwargs)

    # -- repository set-up --------------------------------------------------------------

    def _open_repo(self) -> git.Repo:
        import git as gitmodule

        try:
            if (self.path / ".git").exists():
                repo = gitmodule.Repo(self.path)
            else:
                repo = self._create_repo()
        except gitmodule.GitCommandError as exc:
            raise HistoryError(f"history repository {self.path}: "
                               f"{scrub(exc.stderr or str(exc), 400)}") from None
        except gitmodule.InvalidGitRepositoryError:
            raise HistoryError(f"history repository {self.path}: .git is there but is not "
                               "a Git repository") from None
        except OSError as exc:
            raise HistoryError(f"history repository {self.path}: {exc.strerror or exc}") from None
        if self.remote:
            try:
                self._point_remote(repo)
            except gitmodule.GitCommandError:
                # Another console opening the new ledger added it at the same moment.
                try:
                    self._point_remote(repo)
                except gitmodule.GitCommandError as exc:
                    raise HistoryError(f"history repository {self.path}: remote {REMOTE}: "
                                       f"{scrub(exc.stderr or str(exc), 400)}") from None
        return repo

    def _point_remote(self, repo: git.Repo) -> None:
        """Make the remote `REMOTE` of `repo` point at `self.remote`."""
        urls = [r.url for r in repo.remotes if r.name == REMOTE]
        if not urls:
            repo.create_remote(REMOTE, self.remote)
        elif urls[0] != self.remote:
            repo.remotes[REMOTE].set_url(self.remote)

    def _create_repo(self) -> git.Repo:
        import git as gitmodule

        if (self.path / ".git").exists():
            return gitmodule.Repo(self.path)   # another console just created it
        if self.path.exists() and any(self.path.iterdir()):
            raise HistoryError(f"history repository {self.path}: the directory exists, is "
                               "not empty and is not a Git repository")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Built beside and renamed into place, so two consoles starting at once on a new
        # ledger never open half a repository: the first rename wins, the other uses it.
        staging = self.path.parent / f".{self.path.name}.new-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            self._fill_new_repo(staging)
            try:
                os.rename(staging, self.path)
            except OSError:
                if not (self.path / ".git").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return gitmodule.Repo(self.path)

    def _fill_new_repo(self, directory: Path) -> None:
        """Clone the remote (or init) into the empty `directory`, with the first commit."""
        import git as gitmodule

        repo = None
        if self.remote:
            try:
                # A new machine starts from the shared history.
                repo = gitmodule.Repo.clone_from(self.remote, directory, env=self._git_env(),
                                                 kill_after_timeout=self.git_timeout)
            except gitmodule.GitCommandError:
                shutil.rmtree(directory, ignore_errors=True)
                directory.mkdir()
        if repo is None:
            repo = gitmodule.Repo.init(directory, mkdir=True, initial_branch=BRANCH)
        if not repo.head.is_valid():
            # An empty repository (new, or an empty remote): name the branch.
            repo.git.symbolic_ref("HEAD", f"refs/heads/{BRANCH}")
        attributes = directory / ".gitattributes"
        if not attributes.exists():
            attributes.write_text(ATTRIBUTES)
            who = default_operator(repo)
            actor = gitmodule.Actor(who.name, who.email)
            repo.index.add([".gitattributes"])
            repo.index.commit(f"start the release history of {self.app}", author=actor,
                              committer=actor, skip_hooks=True)
        (directory / HISTORY_DIR).mkdir(exist_ok=True)
        repo.close()

    def _git_env(self) -> dict[str, str]:
        """Environment for Git subprocesses: never prompt, bounded SSH connects."""
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if "GIT_SSH_COMMAND" not in os.environ:
            env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o ConnectTimeout=10"
        return env

    def _recover(self) -> None:
        """Commit record lines a killed console wrote but did not commit."""
        with self._git_locked():
            paths = self._dirty_paths()
            if paths:
                self._commit_now(["commit records written but not committed (a console "
                                  "stopped, or is still running)"], self.operator, paths)

    # -- writing ------------------------------------------------------------------------

    def start_release(self, release_id: str, *, version: str, image: str = "",
                      strategy: str = "", targets: Sequence[str] = (),
                      operator: str | Operator | None = None, kind: str = "release",
                      of_release: str | None = None) -> Release:
        """Record a release as started and commit it (call before touching any cluster).

        Raises HistoryError when the record cannot be written or committed: a release
        that is not recorded must not start.
        """
        rec = self._begin(release_id, version=version, image=image, strategy=strategy,
                          targets=targets, operator=operator, kind=kind, of_release=of_release)
        self.flush()
        return _release_from(rec)

    def _begin(self, release_id: str, *, version: str, image: str, strategy: str,
               targets: Sequence[str], operator: str | Operator | None, kind: str,
               of_release: str | None) -> dict[str, Any]:
        """Write the `release` line and queue its commit."""
        who = operator if isinstance(operator, Operator) else Operator.parse(
            operator or "", self.operator)
        rec = {"type": "release", "v": SCHEMA, "id": release_id, "app": self.app, "kind": kind,
               "version": version, "image": image, "strategy": strategy,
               "targets": list(targets), "operator": who.name, "operator_email": who.email,
               "start": utc_now(), "host": socket.gethostname(), "pid": os.getpid()}
        if of_release:
            rec["of_release"] = of_release
        with self._lock:
            self._open[release_id] = _Open(rec)
            self._append(rec)
            self._request_commit(f"{kind} {self.app} {version} -> "
                                 f"{_clusters_text(targets)} (started)", who)
        return rec

    def touch_cluster(self, release_id: str, cluster: str, *, from_version: str | None,
                      to_version: str | None) -> None:
        """Record that `cluster` is about to change (lets reconcile tell started from not)."""
        rec = {"type": "touch", "release": release_id, "cluster": cluster,
               "from_version": from_version, "to_version": to_version, "ts": utc_now()}
        with self._lock:
            state = self._open.get(release_id)
            if state is not None:
                state.touched[cluster] = rec
            self._append(rec)

    def record_cluster(self, release_id: str, cluster: str, outcome: str, *,
                       from_version: str | None = None, to_version: str | None = None,
                       version: str | None = None, good: bool | None = None,
                       duration: float | None = None, error: str = "",
                       rolled_back_to: str | None = None, reconciled: bool = False,
                       commit: bool = True, version_unknown: bool = False) -> ClusterOutcome:
        """Append one cluster outcome (fsynced now, committed by the background committer).

        `version` is what the cluster runs afterwards; by default to_version when
        healthy or failed, rolled_back_to when rolled back, None (unchanged) when skipped.
        `version_unknown` records None whatever the outcome (a cluster that stopped
        answering mid-rollout and could not be rolled back runs either version).
        `good` defaults to `outcome == "healthy"`.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown cluster outcome {outcome!r}")
        with self._lock:
            state = self._open.get(release_id)
            touch = state.touched.get(cluster, {}) if state else {}
            release = state.release if state else self._find_release_line(release_id)
            if from_version is None:
                from_version = touch.get("from_version")
            if to_version is None:
                to_version = touch.get("to_version") or (release or {}).get("version")
            if version_unknown:
                version = None
            elif version is None and outcome in ("healthy", "failed"):
                version = to_version
            elif version is None and outcome == "rolled_back":
                version = rolled_back_to or from_version
            rec = {"type": "cluster", "release": release_id, "cluster": cluster,
                   "outcome": outcome, "from_version": from_version, "to_version": to_version,
                   "version": version,
                   "good": bool(outcome == "healthy" if good is None else good),
                   "duration": None if duration is None else round(float(duration), 3),
                   "error": scrub(error), "rolled_back_to": rolled_back_to,
                   "operator": (release or {}).get("operator", self.operator.name),
                   "ts": utc_now()}
            if reconciled:
                rec["reconciled"] = True
            if state is not None:
                state.outcomes[cluster] = outcome
            self._append(rec)
            if commit:
                version_text = (release or {}).get("version", to_version or "?")
                self._request_commit(f"{(release or {}).get('kind', 'release')} {self.app} "
                                     f"{version_text}: {cluster} {outcome}",
                                     _author(release, self.operator))
        return ClusterOutcome.from_line(rec)

    def finish_release(self, release_id: str, outcome: str, *, exit_code: int | None = None,
                       push: bool = True) -> PushResult:
        """Record the end of a release, add the human log line, commit, and push.

        Clusters that were touched but got no outcome are recorded `interrupted` first.
        Returns the push result (a failed push keeps the commit for the next push).
        """
        self._end(release_id, outcome, exit_code)
        self.flush()
        result = self.push() if push else PushResult(True, False, "not pushed")
        self._maybe_repack()
        return result

    def _end(self, release_id: str, outcome: str, exit_code: int | None) -> None:
        """Write the `end` line and the human line, and queue their commit."""
        with self._lock:
            state = self._open.get(release_id)
            release = state.release if state else self._find_release_line(release_id)
            if release is None:
                raise HistoryError(f"{self.file}: no release {release_id!r} to finish")
            if state is not None:
                for cluster, touch in state.touched.items():
                    if cluster not in state.outcomes:
                        self.record_cluster(release_id, cluster, "interrupted",
                                            from_version=touch.get("from_version"),
                                            to_version=touch.get("to_version"),
                                            error="no outcome before the release ended",
                                            commit=False)
            self._append({"type": "end", "release": release_id, "outcome": outcome,
                          "exit_code": exit_code, "end": utc_now()})
            self._append_human(release, outcome)
            self._request_commit(_subject(release, outcome), _author(release, self.operator))
            self._open.pop(release_id, None)

    def record_rollback(self, cluster: str, *, from_version: str | None,
                        to_version: str | None, outcome: str = "healthy", error: str = "",
                        duration: float | None = None, of_release: str | None = None,
                        operator: str | Operator | None = None,
                        action_id: str | None = None,
                        on_pushed: Callable[[PushResult], None] | None = None) -> str:
        """Record a manual rollback of one cluster (already done) as an action of its own.

        `outcome` is the cluster outcome of the action: `healthy` when the cluster came
        back healthy on `to_version`, `failed` otherwise. The lines are written (fsynced)
        at once; the commit and the push follow in the background, so rolling back 200
        clusters costs a few commits and one push. `on_pushed(result)` gets the push
        result. Returns the action's id.
        """
        action_id = action_id or (f"rb-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-"
                                  f"{cluster}-{secrets.token_hex(3)}")
        with self._lock:
            self._begin(action_id, version=to_version or "?", image="", strategy="manual",
                        targets=(cluster,), operator=operator, kind="rollback",
                        of_release=of_release)
            self.record_cluster(action_id, cluster, outcome, from_version=from_version,
                                to_version=to_version, duration=duration, error=error,
                                rolled_back_to=to_version, commit=False)
            self._end(action_id, "ok" if outcome == "healthy" else "failed",
                      0 if outcome == "healthy" else 1)
        self.push_later(on_pushed)
        return action_id

    def _append(self, rec: Mapping[str, Any]) -> None:
        """Append one line durably: one write, then fsync (the file is created if absent)."""
        line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n"
        self._write_line(self.file, line)

    def _append_human(self, release: Mapping[str, Any], outcome: str) -> None:
        line = (f"{utc_now()} - {release.get('app', self.app)} - {release.get('version')} - "
                f"{','.join(release.get('targets') or ()) or '-'} - {outcome} by "
                f"{release.get('operator', '')}\n")
        if release.get("kind", "release") != "release":
            line = line.replace(" - ", f" - {release['kind']} ", 1)
        self._write_line(self.path / HUMAN_LOG, line)

    def _write_line(self, path: Path, line: str) -> None:
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

    # -- committing ---------------------------------------------------------------------

    def _request_commit(self, subject: str, author: Operator | None = None) -> None:
        """Queue a commit; the committer folds everything queued so far into one."""
        with self._lock:
            self._pending.append((subject, author or self.operator))
        self._committer.submit(self._commit_pending)

    def _commit_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        subjects = [subject for subject, _ in pending]
        # The author of the most telling subject (a release's start or end) signs.
        author = dict(pending)[_pick_subject(subjects)] if len(pending) > 1 else pending[0][1]
        try:
            with self._git_locked():
                self._commit_now(subjects, author)
        except BaseException as exc:  # kept and re-raised by flush()
            self._commit_error = exc

    def flush(self) -> None:
        """Wait until every record written so far is committed; raise HistoryError if not."""
        future: Future[None] = self._committer.submit(self._commit_pending)
        future.result()
        error, self._commit_error = self._commit_error, None
        if error is not None:
            raise HistoryError(f"history repository {self.path}: cannot commit: "
                               f"{scrub(getattr(error, 'stderr', '') or str(error), 400)}")

    def close(self) -> None:
        """Commit what is pending, finish queued pushes, and stop the committer (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._committer.shutdown(wait=True)

    def _dirty_paths(self) -> list[str]:
        """Ledger files that differ from HEAD (or are not in it yet)."""
        out = self.repo.git.status("--porcelain", "--untracked-files=all", "--", HISTORY_DIR,
                                   HUMAN_LOG, ".gitattributes")
        return [line[3:].strip('"') for line in out.splitlines() if line.strip()]

    def _commit_now(self, subjects: list[str], author: Operator,
                    paths: list[str] | None = None) -> None:
        """One commit of the ledger files (default: this app's), authored by `author`."""
        import git as gitmodule

        index = self.repo.index
        index.add(paths or [str(p.relative_to(self.path)) for p in
                            (self.file, self.path / HUMAN_LOG, self.path / ".gitattributes")
                            if p.exists()])
        if self.repo.head.is_valid() and index.write_tree() == self.repo.head.commit.tree:
            return  # nothing new (the lines were in an earlier commit)
        subject = _pick_subject(subjects)
        body = "\n".join(s for s in subjects if s != subject)
        actor = gitmodule.Actor(author.name, author.email)
        index.commit(subject + (f"\n\n{body}\n" if body else ""), author=actor,
                     committer=actor, skip_hooks=True)

    @contextmanager
    def _git_locked(self) -> Iterator[None]:
        """Serialise Git work between threads and between processes on this ledger."""
        with self._git_lock:
            lock_path = self.path / ".git" / "release-console.lock"
            with open(lock_path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _maybe_repack(self) -> None:
        """Start a background `git repack` once loose objects pass REPACK_LOOSE_KIB.

        Every commit stores the whole record file as a new loose blob; `git gc --auto`
        counts objects, not bytes, so a big ledger would grow by megabytes per commit
        until something packs it (with deltas, a commit then costs a few bytes). Packing
        a big ledger takes many seconds, so - like git's own auto gc - it runs detached
        and the release does not wait; git keeps concurrent commits safe.
        """
        if self._repack is not None and self._repack.poll() is None:
            return
        with self._git_locked():
            counts = dict(line.split(": ", 1) for line in
                          self.repo.git.count_objects("-v").splitlines() if ": " in line)
        if int(counts.get("size", "0")) > REPACK_LOOSE_KIB:
            self._repack = subprocess.Popen(
                ["git", "-C", str(self.path), "repack", "-d", "-q"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)

    # -- pushing ------------------------------------------------------------------------

    def push(self) -> PushResult:
        """Push the ledger branch when a remote is set; never raises, never loses commits.

        A push refused as non-fast-forward (another console pushed first) is fetched,
        merged (union merge of the record files) and pushed again once.
        """
        import git as gitmodule

        if not self.remote:
            return PushResult(True, False, "no remote configured")
        with self._git_locked():
            if not self.repo.head.is_valid():
                return PushResult(True, False, "nothing to push yet")
            try:
                self._git_push()
                return PushResult(True, True, f"pushed to {scrub(self.remote, 200)}")
            except gitmodule.GitCommandError as exc:
                text = str(exc.stderr or exc)
                if not re.search(r"non-fast-forward|fetch first|\[rejected\]", text) or \
                        "hook declined" in text:
                    return PushResult(False, False, _push_failure(self.remote, text))
            try:
                self._merge_remote()
                self._git_push()
                return PushResult(True, True,
                                  f"merged and pushed to {scrub(self.remote, 200)}")
            except gitmodule.GitCommandError as exc:
                return PushResult(False, False, _push_failure(self.remote, str(exc.stderr or exc)))

    def push_later(self, on_result: Callable[[PushResult], None] | None = None) -> None:
        """Push in the background once what is queued is committed (requests coalesce).

        `close()` waits for it. `on_result(result)` is called from the committer thread.
        """
        with self._lock:
            if on_result is not None:
                self._push_waiters.append(on_result)
            if self._push_queued:
                return
            self._push_queued = True
        self._committer.submit(self._push_now)

    def _push_now(self) -> None:
        with self._lock:
            self._push_queued = False
            waiters, self._push_waiters = self._push_waiters, []
        self._commit_pending()
        result = self.push()
        for waiter in waiters:
            waiter(result)

    def sync(self) -> PushResult:
        """Fetch and merge the remote's records, then push the local ones (`history --sync`)."""
        import git as gitmodule

        if not self.remote:
            return PushResult(True, False, "no remote configured")
        self.flush()
        with self._git_locked():
            try:
                self._merge_remote()
            except gitmodule.GitCommandError as exc:
                return PushResult(False, False, _push_failure(self.remote, str(exc.stderr or exc)))
        return self.push()

    def _git_push(self) -> None:
        with self.repo.git.custom_environment(**self._git_env()):
            self.repo.git.push(REMOTE, f"HEAD:refs/heads/{BRANCH}",
                               kill_after_timeout=self.git_timeout)

    def _merge_remote(self) -> None:
        env = dict(self._git_env(), GIT_AUTHOR_NAME=self.operator.name,
                   GIT_AUTHOR_EMAIL=self.operator.email,
                   GIT_COMMITTER_NAME=self.operator.name,
                   GIT_COMMITTER_EMAIL=self.operator.email)
        with self.repo.git.custom_environment(**env):
            self.repo.git.fetch(REMOTE, kill_after_timeout=self.git_timeout)
            remote_ref = f"{REMOTE}/{BRANCH}"
            if remote_ref not in [ref.name for ref in self.repo.remotes[REMOTE].refs]:
                return  # an empty remote: nothing to merge
            if not self.repo.head.is_valid():
                self.repo.git.reset("--hard", remote_ref)
                return
            try:
                # Unrelated histories: this ledger was started while the remote was away.
                self.repo.git.merge("--no-edit", "--allow-unrelated-histories", "-m",
                                    "merge the shared release history", remote_ref)
            except Exception:
                # Never leave the ledger mid-merge: the next commit would record the mess.
                self.repo.git.merge("--abort", with_exceptions=False)
                raise

    # -- reading ------------------------------------------------------------------------

    def _raw_lines(self, app: str | None = None) -> Iterator[bytes]:
        """Every complete record line, in file order: of `app` (default this one; "*": all)."""
        files = (sorted((self.path / HISTORY_DIR).glob("*.jsonl")) if app == "*" else
                 [self.path / HISTORY_DIR / f"{app or self.app}.jsonl"])
        for path in files:
            try:
                handle = open(path, "rb")
            except FileNotFoundError:
                continue
            with handle:
                for line in handle:
                    if line.endswith(b"\n"):   # else half a line from a killed writer
                        yield line

    def _lines(self, app: str | None = None,
               prefixes: tuple[bytes, ...] = ()) -> Iterator[dict[str, Any]]:
        """The parseable records in file order; only lines starting with `prefixes` if given.

        The prefixes (`{"type":"release"` ...) skip parsing the lines a query does not
        need: the ledger writes `type` first.
        """
        for line in self._raw_lines(app):
            if prefixes and not line.startswith(prefixes):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec

    def _find_release_line(self, release_id: str) -> dict[str, Any] | None:
        for rec in self._lines(prefixes=(RELEASE_PREFIX,)):
            if rec.get("id") == release_id:
                return rec
        return None

    def releases(self, *, cluster: str | None = None, app: str | None = None,
                 since: str | None = None, ids: set[str] | None = None) -> list[Release]:
        """Releases and manual actions, oldest first, optionally filtered.

        `app=None` is this ledger's app, `"*"` every app in the repository; `since` is
        anything `parse_since` takes (`7d`, `2026-11-01`, an ISO time); `cluster` keeps
        releases that targeted it and only that cluster's outcome; `ids` keeps only those
        releases.
        """
        since = parse_since(since) if since else None
        builders: dict[str, dict[str, Any]] = {}
        needles = tuple(f'"{rid}"'.encode() for rid in ids) if ids is not None else ()
        # What can be skipped unparsed (most of a big ledger): other clusters' lines, and
        # `touch` lines unless reconciling (only unfinished releases need them).
        mine = f'"cluster":{json.dumps(cluster)}'.encode() if cluster is not None else b""
        for line in self._raw_lines(app):
            if ids is not None and not any(needle in line for needle in needles):
                continue
            if line.startswith(TOUCH_PREFIX):
                if ids is None or (mine and mine not in line):
                    continue
            elif mine and line.startswith(CLUSTER_PREFIX) and mine not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            kind = rec.get("type")
            if kind == "release":
                if ids is not None and rec.get("id") not in ids:
                    continue
                builders[rec["id"]] = {"rec": rec, "clusters": {}, "touched": [], "end": None}
                continue
            entry = builders.get(rec.get("release", ""))
            if entry is None:
                continue
            if kind == "cluster":
                entry["clusters"][rec["cluster"]] = rec
            elif kind == "touch":
                entry["touched"].append(rec["cluster"])
            elif kind == "end":
                entry["end"] = rec
        out = []
        for entry in builders.values():
            release = _release_from(entry["rec"], map(ClusterOutcome.from_line,
                                                      entry["clusters"].values()),
                                    entry["end"], entry["touched"])
            if since and (release.end or release.start) < since:
                continue
            if cluster is not None:
                if cluster not in release.targets and release.outcome_of(cluster) is None:
                    continue
                release = _with_clusters(release, tuple(
                    c for c in release.clusters if c.cluster == cluster))
            out.append(release)
        return out

    history = releases

    def unfinished(self) -> list[Release]:
        """Releases without an `end` record whose console is gone, oldest first.

        A release still run by a live process on this host (another console sharing the
        ledger directory) is not listed: it is not unfinished, only not finished yet.
        Parses only the `release` and `end` lines, then the lines of the open releases:
        cheap enough for every console start, even on a big ledger.
        """
        started: dict[str, dict[str, Any]] = {}
        for rec in self._lines(prefixes=(RELEASE_PREFIX, END_PREFIX)):
            if rec.get("type") == "release":
                started[str(rec.get("id"))] = rec
            else:
                started.pop(str(rec.get("release")), None)
        with self._lock:
            open_ids = {rid for rid, rec in started.items()
                        if rid not in self._open and not _running_here(rec)}
        return self.releases(ids=open_ids) if open_ids else []

    def reconcile(self, release_id: str, live: Mapping[str, str | None]) -> list[ClusterOutcome]:
        """Close an unfinished release with what really happened, then commit and push.

        `live` maps cluster id -> the version running there now (None: unreachable or
        unknown). Every target without an outcome gets one: `interrupted` with the live
        version if it was touched (or already runs the new version), else `skipped`
        (the console died before reaching it). Returns the records written.
        """
        release = next(iter(self.releases(ids={release_id})), None)
        if release is None:
            raise HistoryError(f"{self.file}: no release {release_id!r} to reconcile")
        if release.finished:
            return []
        written = []
        for cluster in release.targets:
            if release.outcome_of(cluster) is not None:
                continue
            actual = live.get(cluster)
            if cluster in release.touched or (actual is not None and actual == release.version):
                note = ("the console stopped mid-rollout; live version "
                        f"{actual}" if actual is not None else
                        "the console stopped mid-rollout; live version unknown")
                written.append(self.record_cluster(
                    release_id, cluster, "interrupted", to_version=release.version,
                    version=actual, good=False, error=note, reconciled=True, commit=False))
            else:
                written.append(self.record_cluster(
                    release_id, cluster, "skipped", to_version=release.version,
                    version=None, error="the console stopped before reaching this cluster",
                    reconciled=True, commit=False))
        self.finish_release(release_id, "interrupted", exit_code=None)
        return written

    def reconcile_unfinished(
            self, read_live: Callable[[Sequence[str]], Mapping[str, str | None]],
    ) -> list[Release]:
        """At start: close every release a dead console left open; returns them, closed.

        `read_live(cluster_ids)` returns the version running on each (None when
        unreachable or absent), e.g. from `Engine.status()`.
        """
        closed = []
        for release in self.unfinished():
            self.reconcile(release.id, read_live(release.targets))
            closed.extend(self.releases(ids={release.id}))
        return closed

    def matrix(self, live: Mapping[str, str | None]) -> list[MatrixRow]:
        """The version matrix: per cluster in `live` (in its order), live vs. ledger.

        Served by `LatestIndex`: the cost follows what was appended since the last
        query, not the size of the ledger.
        """
        found = self.latest.lookup(list(live))
        rows = []
        for cluster, live_version in live.items():
            recorded, good = found.get(cluster, (None, None))
            rows.append(MatrixRow(
                cluster=cluster, live=live_version,
                recorded=recorded["version"] if recorded else None,
                recorded_at=recorded["ts"] if recorded else None,
                recorded_by=recorded.get("operator") if recorded else None,
                recorded_release=recorded["release"] if recorded else None,
                last_good=good["version"] if good else None,
                last_good_at=good["ts"] if good else None,
                drift=live_version is not None and
                live_version != (recorded["version"] if recorded else None)))
        return rows

    def last_good(self, cluster: str) -> str | None:
        """The last version recorded healthy on `cluster` (for `rollback --to last-good`)."""
        _, good = self.latest.lookup([cluster])[cluster]
        return good["version"] if good else None


# --- the latest-version index -----------------------------------------------------------

class LatestIndex:
    """Per cluster, its latest `cluster` record with a version and its latest good one.

    What the matrix, `last_good` and drift need, without re-reading a big ledger: the
    answers are cached in `.git/release-console/<app>.latest.json` (never committed)
    together with the file size they hold for and a hash of the bytes just before it.
    A query folds in only the lines appended since; a cluster asked about for the first
    time is looked up by reading the file backwards, stopping as soon as it is found
    and skipping whole blocks that do not mention it. If the file changed other than by
    appending (a merge), the cache is dropped and rebuilt the same way.
    """

    TAIL = 256          # bytes hashed to recognise "the same file, appended to"
    BLOCK = 1 << 16

    def __init__(self, file: Path, store: Path) -> None:
        """Index `file` (a record file), caching in `store`."""
        self.file = file
        self.store = store
        self._lock = threading.Lock()
        self._state: dict[str, Any] | None = None

    def lookup(self, clusters: Sequence[str]) -> dict[str, tuple[dict | None, dict | None]]:
        """(latest record with a version, latest good record) per cluster, as of now."""
        with self._lock:
            try:
                handle = open(self.file, "rb")
            except FileNotFoundError:
                return {name: (None, None) for name in clusters}
            with handle:
                state, changed = self._current(handle)
                known = state["clusters"]
                missing = [name for name in dict.fromkeys(clusters) if name not in known]
                if missing:
                    known.update(self._scan_back(handle, state["size"], missing))
                    changed = True
            if changed:
                self._save(state)
            self._state = state
            return {name: tuple(known[name]) for name in clusters}  # type: ignore[misc]

    def _current(self, handle: Any) -> tuple[dict[str, Any], bool]:
        """The cached state brought up to the file's last complete line."""
        end = _complete_end(handle)
        state = self._state or self._load()
        if state is None or state["size"] > end or state["tail"] != _tail_hash(
                handle, state["size"], self.TAIL):
            state = {"v": SCHEMA, "size": end, "clusters": {}}
            state["tail"] = _tail_hash(handle, end, self.TAIL)
            return state, True
        if state["size"] == end:
            return state, False
        handle.seek(state["size"])
        known = state["clusters"]
        for line in handle.read(end - state["size"]).split(b"\n"):
            rec = _cluster_line(line)
            if rec is None or rec.get("cluster") not in known or rec.get("version") is None:
                continue
            entry = known[rec["cluster"]]
            entry[0] = rec
            if rec.get("good"):
                entry[1] = rec
        state["size"] = end
        state["tail"] = _tail_hash(handle, end, self.TAIL)
        return state, True

    def _scan_back(self, handle: Any, end: int, clusters: list[str]) -> dict[str, list]:
        """Read [0, end) backwards for `clusters` until each has both answers."""
        found: dict[str, list] = {name: [None, None] for name in clusters}
        wanted = {name.encode(): name for name in clusters}
        position, carry = end, b""
        while position > 0 and wanted:
            step = min(self.BLOCK, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + carry
            if position > 0:
                cut = chunk.find(b"\n")
                if cut < 0:
                    carry = chunk  # one long line: keep reading
                    continue
                # The first line may start in the block before: carry it over.
                carry, body = chunk[:cut], chunk[cut + 1:]
            else:
                carry, body = b"", chunk
            # Skip blocks that do not mention a wanted cluster: a substring search for a
            # few names, one pass collecting the names in the block for many.
            if len(wanted) <= 16:
                if not any(b'"cluster":"' + name + b'"' in body for name in wanted):
                    continue
            elif wanted.keys().isdisjoint(_CLUSTER_NAME.findall(body)):
                continue
            for line in reversed(body.split(b"\n")):
                if not line.startswith(b'{"type":"cluster"'):
                    continue
                name = _cluster_name(line)
                if name is not None and name not in wanted:
                    continue
                rec = _cluster_line(line)
                if rec is None or rec.get("version") is None:
                    continue
                key = rec.get("cluster", "")
                if key.encode() not in wanted:
                    continue
                entry = found[key]
                if entry[0] is None:
                    entry[0] = rec
                if rec.get("good") and entry[1] is None:
                    entry[1] = rec
                if entry[0] is not None and entry[1] is not None:
                    del wanted[key.encode()]
                    if not wanted:
                        break
        return found

    def _load(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.store.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and state.get("v") == SCHEMA else None

    def _save(self, state: dict[str, Any]) -> None:
        """Write the cache atomically; a cache that cannot be written is only slower."""
        try:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.store.with_name(f"{self.store.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.store)
        except OSError:
            pass


def _complete_end(handle: Any) -> int:
    """The offset just after the last newline of the file (what is safe to read)."""
    size = handle.seek(0, os.SEEK_END)
    position = size
    while position > 0:
        step = min(LatestIndex.BLOCK, position)
        position -= step
        handle.seek(position)
        cut = handle.read(step).rfind(b"\n")
        if cut >= 0:
            return position + cut + 1
    return 0


def _tail_hash(handle: Any, end: int, length: int) -> str:
    import hashlib

    start = max(0, end - length)
    handle.seek(start)
    return hashlib.sha1(handle.read(end - start)).hexdigest()


_CLUSTER_NAME = re.compile(rb'"cluster":"([^"\\]*)"')


def _cluster_name(line: bytes) -> bytes | None:
    """The cluster of a record line written by this module, without parsing JSON."""
    start = line.find(b',"cluster":"')
    if start < 0:
        return None
    start += len(b',"cluster":"')
    stop = line.find(b'"', start)
    name = line[start:stop]
    return None if b"\\" in name else name  # escaped names: let JSON decide


def _cluster_line(line: bytes) -> dict[str, Any] | None:
    if not line.startswith(b'{"type":"cluster"'):
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


# --- the event listener ----------------------------------------------------------------

class EventLedger:
    """An engine listener that turns `console.events.Event`s into ledger records.

    RELEASE_PLANNED is remembered; RELEASE_STARTED writes and commits the release (a
    HistoryError raised here must stop the release before it touches a cluster);
    CLUSTER_STARTED writes a `touch` line; CLUSTER_HEALTHY / CLUSTER_FAILED /
    CLUSTER_ROLLED_BACK / CLUSTER_SKIPPED write outcomes (an `outcome` key in the data
    overrides, e.g. `interrupted`); RELEASE_FINISHED ends the release and pushes.
    Rollback events of a release not open here are manual actions and are recorded as
    `rollback` actions. Push failures and other non-fatal problems go to `on_warning`.
    """

    def __init__(self, ledger: Ledger,
                 on_warning: Callable[[str], None] | None = None) -> None:
        """`on_warning(message: str)` receives push failures (default: ignored)."""
        self.ledger = ledger
        self.on_warning = on_warning
        self.last_push: PushResult | None = None
        self._lock = threading.Lock()
        self._planned: dict[str, dict[str, Any]] = {}
        self._started: set[str] = set()
        self._clusters: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, event: Event) -> None:
        """Record `event` (thread-safe)."""
        handler = {
            Kind.RELEASE_PLANNED: self._on_release_planned,
            Kind.RELEASE_STARTED: self._on_release_started,
            Kind.CLUSTER_STARTED: self._on_cluster_started,
            Kind.CLUSTER_HEALTHY: self._on_cluster_healthy,
            Kind.CLUSTER_FAILED: self._on_cluster_failed,
            Kind.CLUSTER_SKIPPED: self._on_cluster_skipped,
            Kind.CLUSTER_ROLLING_BACK: self._on_cluster_rolling_back,
            Kind.CLUSTER_ROLLED_BACK: self._on_cluster_rolled_back,
            Kind.RELEASE_FINISHED: self._on_release_finished,
        }.get(event.kind)
        if handler is not None:
            with self._lock:
                handler(event)

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)

    def _on_release_planned(self, event: Event) -> None:
        self._planned[event.release_id] = dict(event.data)

    def _on_release_started(self, event: Event) -> None:
        data = {**self._planned.pop(event.release_id, {}), **event.data}
        self.ledger.start_release(event.release_id, version=str(data.get("version", "?")),
                                  image=str(data.get("image", "")),
                                  strategy=str(data.get("strategy", "")),
                                  targets=tuple(data.get("targets") or ()),
                                  operator=str(data.get("operator") or ""))
        self._started.add(event.release_id)

    def _on_cluster_started(self, event: Event) -> None:
        if event.release_id not in self._started or event.cluster is None:
            return
        state = self._clusters.setdefault((event.release_id, event.cluster), {})
        state.update(from_version=event.data.get("from_version"),
                     to_version=event.data.get("to_version"))
        self.ledger.touch_cluster(event.release_id, event.cluster,
                                  from_version=event.data.get("from_version"),
                                  to_version=event.data.get("to_version"))

    def _on_cluster_healthy(self, event: Event) -> None:
        if event.release_id not in self._started or event.cluster is None:
            return
        self.ledger.record_cluster(event.release_id, event.cluster,
                                   event.data.get("outcome", "healthy"),
                                   version=event.data.get("version"),
                                   duration=event.data.get("duration"))

    def _on_cluster_failed(self, event: Event) -> None:
        if event.release_id not in self._started or event.cluster is None:
            return
        state = self._clusters.setdefault((event.release_id, event.cluster), {})
        state["error"] = event.data.get("error") or event.message
        state["duration"] = event.data.get("duration")
        self.ledger.record_cluster(event.release_id, event.cluster,
                                   event.data.get("outcome", "failed"),
                                   error=state["error"], duration=state["duration"])

    def _on_cluster_skipped(self, event: Event) -> None:
        if event.release_id not in self._started or event.cluster is None:
            return
        self.ledger.record_cluster(event.release_id, event.cluster,
                                   event.data.get("outcome", "skipped"),
                                   error=event.data.get("reason") or event.message)

    def _on_cluster_rolling_back(self, event: Event) -> None:
        if event.cluster is None:
            return
        state = self._clusters.setdefault((event.release_id, event.cluster), {})
        state["rollback_from"] = event.data.get("from_version")
        state["rollback_to"] = event.data.get("to_version")
        state["rollback_start"] = event.ts

    def _on_cluster_rolled_back(self, event: Event) -> None:
        if event.cluster is None:
            return
        state = self._clusters.pop((event.release_id, event.cluster), {})
        ok = bool(event.data.get("ok", True))
        target = event.data.get("version") or state.get("rollback_to")
        error = " ; ".join(filter(None, [state.get("error"),
                                         None if ok else
                                         f"rollback failed: {event.data.get('error', '')}"]))
        if event.release_id in self._started:
            # A failed rollback leaves the cluster somewhere between the two versions
            # (often unreachable): the ledger says "unknown", never the version tried.
            self.ledger.record_cluster(
                event.release_id, event.cluster, "rolled_back" if ok else "failed",
                from_version=state.get("from_version"), to_version=state.get("to_version"),
                version=target if ok else None, good=ok, duration=state.get("duration"),
                error=error, rolled_back_to=target if ok else None, version_unknown=not ok)
            return
        # A manual rollback (one cluster, or every cluster of a finished release).
        started = state.get("rollback_start")
        self.ledger.record_rollback(
            event.cluster, from_version=state.get("rollback_from"), to_version=target,
            outcome="healthy" if ok else "failed", error=error,
            duration=None if started is None else event.ts - started,
            of_release=event.release_id or None, operator=str(event.data.get("by") or ""),
            on_pushed=self._pushed)

    def _on_release_finished(self, event: Event) -> None:
        if event.release_id not in self._started:
            return  # pre-flight failed: nothing was touched, nothing to record
        self._started.discard(event.release_id)
        for key in [k for k in self._clusters if k[0] == event.release_id]:
            del self._clusters[key]
        code = event.data.get("exit_code")
        self._pushed(self.ledger.finish_release(
            event.release_id, str(event.data.get("outcome", "unknown")),
            exit_code=None if code is None else int(code)))

    def _pushed(self, result: PushResult) -> None:
        self.last_push = result
        if not result.ok:
            self._warn(f"history: {result.message} (the record is kept locally; "
                       "`release-console history --sync` retries)")


# --- helpers ---------------------------------------------------------------------------

def _release_from(rec: Mapping[str, Any], clusters: Any = (), end: Mapping | None = None,
                  touched: Sequence[str] = ()) -> Release:
    return Release(id=rec["id"], app=rec.get("app", ""), kind=rec.get("kind", "release"),
                   version=rec.get("version", ""), image=rec.get("image", ""),
                   strategy=rec.get("strategy", ""), targets=tuple(rec.get("targets") or ()),
                   operator=rec.get("operator", ""), start=rec.get("start", ""),
                   end=end.get("end") if end else None,
                   outcome=end.get("outcome") if end else None,
                   exit_code=end.get("exit_code") if end else None,
                   of_release=rec.get("of_release"), clusters=tuple(clusters),
                   touched=tuple(dict.fromkeys(touched)))


def _running_here(rec: Mapping[str, Any]) -> bool:
    """Whether the process that wrote this `release` line is alive on this host."""
    pid = rec.get("pid")
    if rec.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True     # alive, run by another user
    return True


def _author(release: Mapping[str, Any] | None, default: Operator) -> Operator:
    """The operator recorded on a release line (the commit author of its records)."""
    if not release or not release.get("operator"):
        return default
    return Operator(release["operator"], release.get("operator_email") or default.email)


def _with_clusters(release: Release, clusters: tuple[ClusterOutcome, ...]) -> Release:
    from dataclasses import replace

    return replace(release, clusters=clusters)


def _clusters_text(clusters: Sequence[str]) -> str:
    names = list(clusters)
    if len(names) <= SUBJECT_CLUSTERS:
        return ",".join(names) or "-"
    return ",".join(names[:SUBJECT_CLUSTERS]) + f",+{len(names) - SUBJECT_CLUSTERS} more"


def _subject(release: Mapping[str, Any], outcome: str) -> str:
    kind = release.get("kind", "release")
    return (f"{kind} {release.get('app')} {release.get('version')} -> "
            f"{_clusters_text(release.get('targets') or ())} ({outcome})")


def _pick_subject(subjects: list[str]) -> str:
    """The commit subject: a release's end, else its start, else a count of the records."""
    ended = [s for s in subjects if s.endswith(")") and not s.endswith("(started)")]
    started = [s for s in subjects if s.endswith("(started)")]
    if ended or started:
        return (ended or started)[-1]
    if len(subjects) == 1:
        return subjects[0]
    return f"{subjects[0]} (+{len(subjects) - 1} more records)"


def _push_failure(remote: str, text: str) -> str:
    """A one-line reason from git's output: the remote's own words and the rejection."""
    lines = [line.strip().strip("'").strip() for line in text.splitlines()]
    lines = [re.sub(r"^stderr:\s*'?", "", line) for line in lines if line]
    telling = [line for line in lines if line.startswith(("remote:", "!", "fatal:"))
               or "rejected" in line]
    detail = "; ".join(dict.fromkeys(telling or lines[-2:]))
    return f"push to {scrub(remote, 200)} failed: {scrub(detail, 400)}"


__all__ = ["ClusterOutcome", "EventLedger", "HistoryError", "LatestIndex", "Ledger", "MatrixRow",
           "Operator", "PushResult", "Release", "default_operator", "parse_since", "scrub",
           "utc_now"]
