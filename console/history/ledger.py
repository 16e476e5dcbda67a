"""The Ledger: records releases and cluster outcomes in the Git ledger (its queries are
in `console.history.queries`, a base class).

Crash safety: every line is written with one `write` and `fsync`ed before the call
returns; the `release` line is committed before `start_release` returns, i.e. before any
cluster is touched; other lines are committed by a background committer that batches
whatever has accumulated (so 200 clusters finishing together cost a few commits, not
200). Lines a killed console left uncommitted are committed when the ledger is next
opened, and `unfinished()` / `reconcile()` close releases that never got an `end` line.
A failed push keeps the commits; the next push (or `sync()`) delivers them.

All public methods are thread-safe; two processes on one ledger serialise their Git
work with a lock file under `.git/` (see `console.history.repository`).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.events import Outcome
from console.history.latest import LatestIndex
from console.history.operator import Operator, author_of, current_operator
from console.history.queries import LedgerReading
from console.history.reading import find_release_line
from console.history.records import (
    HISTORY_DIR, HUMAN_LOG, OUTCOMES,
    ClusterOutcome, HistoryError,
    PushResult, Release, encode, release_from, utc_now, write_line,
)
from console.history.repository import (
    ENDED, STARTED, Repository, Subject, clusters_text, error_text, pick_subject, subject,
)
from console.redact import ERROR_LIMIT

if TYPE_CHECKING:
    from console.config import FleetConfig

COMMIT_GAP = 0.5    # s at least between two background commits (records fold into one)


@dataclass
class _Open:
    """In-memory state of a release this process is recording."""

    release: dict[str, Any]
    touched: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)


class Ledger(LedgerReading):
    """The Git ledger of one application (see the module docstring)."""

    def __init__(self, path: str | Path, app: str, *, remote: str | None = None,
                 operator: Operator | None = None, git_timeout: float = 30.0) -> None:
        """Open (clone or create) the ledger repository at `path` for `app`.

        `remote` is the URL pushed to (and cloned from when `path` is absent);
        `git_timeout` bounds every network Git call in seconds.
        """
        self.path = Path(path).expanduser().resolve()
        self.app = app
        self.git_timeout = git_timeout
        self._lock = threading.RLock()      # the record file and in-memory state
        self._open: dict[str, _Open] = {}
        # Commit subjects (with their author) waiting for the committer.
        self._pending: list[tuple[Subject, Operator]] = []
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-commit")
        self._last_commit = 0.0     # monotonic time the last commit ended
        self._commit_error: BaseException | None = None
        self._closed = False
        self._push_queued = False
        self._push_waiters: list[Callable[[PushResult], None]] = []
        # Git work has its own lock in the repository, so appends never wait on it.
        self.repository = Repository(self.path, app, remote=remote, git_timeout=git_timeout)
        self.remote = self.repository.remote   # without credentials (see remote_auth)
        self.operator = operator or current_operator(repo=self.repository.repo)
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

    def _recover(self) -> None:
        """Commit record lines a killed console wrote but did not commit.

        Git's own lock files that console left are cleared by `Repository.locked()`.
        Raises HistoryError (one line) when they cannot be committed.
        """
        try:
            with self.repository.locked():
                paths = self.repository.dirty_paths()
                if paths:
                    self.repository.commit([Subject("commit records written but not committed "
                                                    "(a console stopped, or is still running)")],
                                           self.operator, paths)
        except HistoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - Git and OS errors: one line, no traceback
            raise HistoryError(f"history repository {self.path}: cannot commit the records a "
                               f"stopped console left: {error_text(exc)}") from None

    # -- writing ------------------------------------------------------------------------

    def start_release(self, release_id: str, *, version: str, image: str = "",
                      strategy: str = "", targets: Sequence[str] = (),
                      operator: str | Operator | None = None, kind: str = "release",
                      of_release: str | None = None,
                      freeze_override: Mapping[str, Any] | None = None,
                      digest: str | None = None, shard: str | None = None) -> Release:
        """Record a release as started and commit it (call before touching any cluster).

        `shard` (`K/N`): this process runs one shard of the release; every shard writes
        its own `release` line (its own targets) and `end` line under the one release
        id, and the readers put them together (`console.history.reading`).

        `freeze_override` (reason, by, confirmed, operator, windows): the release was let through open freeze
        windows; it is kept on the `release` line (`history --json` shows it).

        Raises HistoryError when the record cannot be written or committed: a release
        that is not recorded must not start.
        """
        rec = self._begin(release_id, version=version, image=image, strategy=strategy,
                          targets=targets, operator=operator, kind=kind, of_release=of_release,
                          freeze_override=freeze_override, digest=digest, shard=shard)
        try:
            self.flush()
        except HistoryError:
            # The `release` line is on disk (fsynced) but the release is refused: end it
            # now, so it never reads as a release a stopped console left `interrupted`.
            # Not committed here (that just failed): the next commit or open takes it.
            with self._lock:
                self._open.pop(release_id, None)
                self._append({"type": "end", "release": release_id, "outcome": Outcome.NOT_STARTED.value,
                              "exit_code": 2, "end": utc_now(),
                              **({"shard": shard} if shard else {})})
            raise
        return release_from(rec)

    def _begin(self, release_id: str, *, version: str, image: str, strategy: str,
               targets: Sequence[str], operator: str | Operator | None, kind: str,
               of_release: str | None,
               freeze_override: Mapping[str, Any] | None = None,
               digest: str | None = None, shard: str | None = None) -> dict[str, Any]:
        """Write the `release` line and queue its commit."""
        who = operator if isinstance(operator, Operator) else Operator.parse(
            operator or "", self.operator)
        rec = {"type": "release", "id": release_id, "app": self.app, "kind": kind,
               "version": version, "image": image, "strategy": strategy,
               "targets": list(targets), "operator": who.name, "operator_email": who.email,
               "start": utc_now(), "host": socket.gethostname(), "pid": os.getpid()}
        if of_release:
            rec["of_release"] = of_release
        if digest:
            rec["digest"] = digest
        if shard:
            rec["shard"] = shard
        if freeze_override:
            rec["freeze_override"] = {
                "reason": str(freeze_override.get("reason") or "")[:500],
                "by": str(freeze_override.get("by") or who.name),
                "windows": list(freeze_override.get("windows") or ())}
            if "confirmed" in freeze_override:   # whether the cluster confirmed `by`
                rec["freeze_override"]["confirmed"] = bool(freeze_override["confirmed"])
            if freeze_override.get("operator"):  # the operator, when `by` is the cluster's
                rec["freeze_override"]["operator"] = str(freeze_override["operator"])
        with self._lock:
            self._append(rec)
            self._open[release_id] = _Open(rec)
            self._request_commit(Subject(f"{kind} {self.app} {version} -> "
                                         f"{clusters_text(targets)} (started)", STARTED), who)
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

    def record_cluster(self, release_id: str, cluster: str, outcome: Outcome | str, *,
                       from_version: str | None = None, to_version: str | None = None,
                       version: str | None = None, good: bool | None = None,
                       duration: float | None = None, error: str = "",
                       rolled_back_to: str | None = None, reconciled: bool = False,
                       commit: bool = True, version_unknown: bool = False,
                       helm_revision: int | None = None,
                       digest: str | None = None) -> ClusterOutcome:
        """Append one cluster outcome (fsynced now, committed by the background committer).

        `version` is what the cluster runs afterwards; by default to_version when
        healthy or failed, rolled_back_to when rolled back, None (unchanged) when skipped.
        `version_unknown` records None whatever the outcome (a cluster that stopped
        answering mid-rollout and could not be rolled back runs either version).
        `good` defaults to `outcome is Outcome.HEALTHY`. `helm_revision` is the Helm release
        revision the cluster runs afterwards (apps shipped as a chart).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown cluster outcome {outcome!r}")
        outcome = Outcome(outcome)
        with self._lock:
            state = self._open.get(release_id)
            touch = state.touched.get(cluster, {}) if state else {}
            release = state.release if state else find_release_line([self.file], release_id)
            if from_version is None:
                from_version = touch.get("from_version")
            if to_version is None:
                to_version = touch.get("to_version") or (release or {}).get("version")
            if version_unknown:
                version = None
            elif version is None and outcome in (Outcome.HEALTHY, Outcome.FAILED):
                version = to_version
            elif version is None and outcome is Outcome.ROLLED_BACK:
                version = rolled_back_to or from_version
            rec = {"type": "cluster", "release": release_id, "cluster": cluster,
                   "outcome": outcome.value, "from_version": from_version,
                   "to_version": to_version, "version": version,
                   "good": bool(outcome is Outcome.HEALTHY if good is None else good),
                   "duration": None if duration is None else round(float(duration), 3),
                   "error": _cut(error), "rolled_back_to": rolled_back_to,
                   "operator": (release or {}).get("operator", self.operator.name),
                   "ts": utc_now()}
            if reconciled:
                rec["reconciled"] = True
            if helm_revision is not None:
                rec["helm_revision"] = int(helm_revision)
            if digest and version is not None:
                rec["digest"] = digest   # what `version` is pinned to there
            if state is not None:
                state.outcomes[cluster] = outcome.value
            self._append(rec)
            if commit:
                version_text = (release or {}).get("version", to_version or "?")
                self._request_commit(Subject(f"{(release or {}).get('kind', 'release')} "
                                             f"{self.app} {version_text}: {cluster} "
                                             f"{outcome.value}"),
                                     author_of(release, self.operator))
        return ClusterOutcome.from_line(rec)

    def finish_release(self, release_id: str, outcome: Outcome | str, *,
                       exit_code: int | None = None,
                       push: bool = True) -> PushResult:
        """Record the end of a release, add the human log line, commit, and push.

        Clusters that were touched but got no outcome are recorded `interrupted` first.
        Returns the push result (a failed push keeps the commit for the next push).
        """
        self._end(release_id, outcome, exit_code)
        self.flush()
        result = self.push() if push else PushResult(True, False, "not pushed")
        self.repository.maybe_repack()
        return result

    def _end(self, release_id: str, outcome: Outcome | str, exit_code: int | None) -> None:
        """Write the `end` line and the human line, and queue their commit."""
        outcome = str(outcome)    # its string, as the `end` line has always said
        with self._lock:
            state = self._open.get(release_id)
            release = state.release if state else find_release_line([self.file], release_id)
            if release is None:
                raise HistoryError(f"{self.file}: no release {release_id!r} to finish")
            if state is not None:
                for cluster, touch in state.touched.items():
                    if cluster not in state.outcomes:
                        self.record_cluster(release_id, cluster, Outcome.INTERRUPTED,
                                            from_version=touch.get("from_version"),
                                            to_version=touch.get("to_version"),
                                            error="no outcome before the release ended",
                                            commit=False)
            end = {"type": "end", "release": release_id, "outcome": outcome,
                   "exit_code": exit_code, "end": utc_now()}
            if state is not None and state.release.get("shard"):
                end["shard"] = state.release["shard"]   # this shard's end, not the release's
            self._append(end)
            self._append_human(release, outcome)
            self._request_commit(Subject(subject(release, outcome), ENDED),
                                 author_of(release, self.operator))
            self._open.pop(release_id, None)

    def record_rollback(self, cluster: str, *, from_version: str | None,
                        to_version: str | None, outcome: Outcome | str = Outcome.HEALTHY,
                        error: str = "",
                        duration: float | None = None, of_release: str | None = None,
                        operator: str | Operator | None = None,
                        action_id: str | None = None,
                        on_pushed: Callable[[PushResult], None] | None = None,
                        helm_revision: int | None = None,
                        digest: str | None = None) -> str:
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
                        of_release=of_release, digest=digest)
            self.record_cluster(action_id, cluster, outcome, from_version=from_version,
                                to_version=to_version, duration=duration, error=error,
                                rolled_back_to=to_version, commit=False,
                                helm_revision=helm_revision, digest=digest)
            healthy = Outcome(outcome) is Outcome.HEALTHY
            self._end(action_id, Outcome.OK if healthy else Outcome.FAILED, 0 if healthy else 1)
        self.push_later(on_pushed)
        return action_id

    def record_drill(self, drill: Mapping[str, Any]) -> PushResult:
        """Record a rollback drill (`release-console drill`) as one `drill` line, commit and
        push. Drills are rehearsals on a local fleet: the version matrix, `status`,
        `last-good` and the release history never read these lines (`drills()` does)."""
        with self._lock:
            self._append({"type": "drill", **drill})
            self._request_commit(Subject(f"drill {self.app} {drill.get('tag', '?')}: "
                                         f"{'passed' if drill.get('ok') else 'failed'}"))
        self.flush()
        return self.push()

    def record_steer(self, release_id: str, action: str, by: str, *,
                     cluster: str | None = None, detail: str = "",
                     confirmed: bool | None = None, refused: str | None = None) -> None:
        """Record who steered a running release (an action through the control channel,
        a gate decision, a pause): one `steer` line, committed with the next batch.
        `confirmed`: whether the requester's cluster confirmed `by` (None: not asked -
        a decision taken in the console itself); `refused`: why the release refused the
        request (None: it was taken)."""
        rec = {"type": "steer", "release": release_id, "action": action, "by": by,
               "cluster": cluster, "detail": _cut(detail), "ts": utc_now()}
        if confirmed is not None:
            rec["confirmed"] = confirmed
        if refused is not None:
            rec["refused"] = _cut(refused)
        with self._lock:
            self._append(rec)
            self._request_commit(Subject(f"steer {self.app} {release_id}: "
                                         f"{'refused ' if refused is not None else ''}{action}"
                                         f"{' ' + cluster if cluster else ''} by {by or '?'}"))

    def record_bake(self, release_id: str, *, wave: int, seconds: float, ok: bool,
                    failed: Sequence[str] = (), completed: bool = True,
                    start: str | None = None) -> None:
        """Record how one wave's bake went (a `bake` line; committed with the release)."""
        with self._lock:
            self._append({"type": "bake", "release": release_id, "wave": int(wave),
                          "seconds": round(float(seconds), 3), "ok": bool(ok),
                          "failed": list(failed), "completed": bool(completed),
                          "start": start or utc_now(), "end": utc_now()})

    def _append(self, rec: Mapping[str, Any]) -> None:
        """Append one line durably: one write, then fsync (the file is created if absent)."""
        write_line(self.file, encode(rec))

    def _append_human(self, release: Mapping[str, Any], outcome: str) -> None:
        line = (f"{utc_now()} - {release.get('app', self.app)} - {release.get('version')} - "
                f"{','.join(release.get('targets') or ()) or '-'} - {outcome} by "
                f"{release.get('operator', '')}\n")
        if release.get("kind", "release") != "release":
            line = line.replace(" - ", f" - {release['kind']} ", 1)
        write_line(self.path / HUMAN_LOG, line)

    def _request_commit(self, subject: Subject, author: Operator | None = None) -> None:
        """Queue a commit; the committer folds everything queued so far into one."""
        with self._lock:
            self._pending.append((subject, author or self.operator))
        self._committer.submit(self._commit_pending, COMMIT_GAP)

    def _commit_pending(self, gap: float = 0.0) -> None:
        # A commit costs ~7 ms of CPU; clusters of a big release end close together:
        # waiting up to `gap` since the last commit folds theirs into one (every line is
        # on disk already; `flush` asks with no gap).
        wait = self._last_commit + gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        with self._lock:
            if not self._pending:
                return
        try:
            with self.repository.locked():
                # Subjects and files are taken under the appends' lock (which never waits
                # for Git's): no line is committed under the subjects of the lines before it.
                with self._lock:
                    pending, self._pending = self._pending, []
                    self.repository.stage(self._paths())
                subjects = [subject for subject, _ in pending]
                # The most telling subject's author signs (a count: the first record's).
                author = dict(pending).get(pick_subject(subjects), pending[0][1])
                self.repository.commit(subjects, author)
        except BaseException as exc:  # kept and re-raised by flush()
            self._commit_error = exc
        self._last_commit = time.monotonic()

    def flush(self) -> None:
        """Wait until every record written so far is committed; raise HistoryError if not."""
        future: Future[None] = self._committer.submit(self._commit_pending)
        future.result()
        error, self._commit_error = self._commit_error, None
        if error is not None:
            raise HistoryError(f"history repository {self.path}: cannot commit: "
                               f"{error_text(error)}")

    def close(self) -> None:
        """Commit what is pending, finish queued pushes, and stop the committer (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._committer.shutdown(wait=True)

    def _paths(self) -> list[str]:
        """This app's ledger files, relative to the repository (what a commit adds)."""
        return [str(p.relative_to(self.path)) for p in
                (self.file, self.path / HUMAN_LOG, self.path / ".gitattributes")
                if p.exists()]

    # -- pushing ------------------------------------------------------------------------

    def push(self) -> PushResult:
        """Push the ledger branch when a remote is set; never raises, never loses commits.

        A push refused as non-fast-forward (another console pushed first) is fetched,
        merged (union merge of the record files) and pushed again (a few times, see `Repository.push`).
        """
        return self.repository.push(self.operator)

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
        if not self.remote:
            return PushResult(True, False, "no remote configured")
        self.flush()
        return self.repository.sync(self.operator)


def _cut(error: str | None) -> str:
    """An error text as recorded: at most ERROR_LIMIT characters. Errors come from events,
    which `console.redact` scrubbed when they were made."""
    text = error or ""
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 3] + "..."


__all__ = ["Ledger"]
