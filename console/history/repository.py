"""The ledger's Git repository: open, create or clone it, commit, push, merge, repack.

Holds no record logic: `console.history.ledger` decides what to write and when to
commit; this module does the Git work, serialised between threads and processes by a
lock file under `.git/`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.history.operator import Operator, default_operator
from console.history.remote_auth import split_remote
from console.history.records import HISTORY_DIR, HUMAN_LOG, HistoryError, PushResult
from console.redact import register_secret, scrub

if TYPE_CHECKING:
    import git

ATTRIBUTES = f"{HISTORY_DIR}/*.jsonl merge=union\n{HUMAN_LOG} merge=union\n"
BRANCH = "main"
REMOTE = "origin"
SUBJECT_CLUSTERS = 6  # clusters named in a commit subject before "+N more"
REPACK_LOOSE_KIB = 64 * 1024  # loose objects (KiB) past which finishing a release repacks
# Git's lock files a commit, a ref update or a merge of the ledger may leave when killed.
GIT_LOCK_FILES = ("index.lock", "HEAD.lock", "ORIG_HEAD.lock", "MERGE_HEAD.lock",
                  "config.lock", f"refs/heads/{BRANCH}.lock",
                  f"refs/remotes/{REMOTE}/{BRANCH}.lock")
STALE_LOCK_SECONDS = 5.0
# `git push --porcelain`'s line for a ref: flag, TAB, from:to, TAB, summary (reason).
PORCELAIN_REF = re.compile(r"^'?(?P<flag>[ +\-*=!])\t(?P<refs>[^\t]+)\t(?P<summary>.*?)'?$",
                           re.M)
# What the remote says (the reason of a `[remote rejected]` ref) when two pushes met on
# its branch at once, as the first pushes to an empty remote do: it could not lock it.
REMOTE_LOCK_RACE = ("(failed to update ref)", "(failed to lock)", "(cannot lock ref")
PUSH_ATTEMPTS = 8  # pushes of one round refused as behind (each then merges) before giving up  # age past which a Git lock file seen under the ledger's lock is gone

log = logging.getLogger(__name__)


class Repository:
    """The Git repository of a ledger at `path`, pushed to `remote` when set."""

    def __init__(self, path: Path, app: str, *, remote: str | None,
                 git_timeout: float) -> None:
        """Open (clone or create) the repository; raises HistoryError naming the path.

        `app` names the first commit of a new ledger; `git_timeout` bounds every
        network Git call in seconds.
        """
        self.path = path
        self.app = app
        # The URL as Git sees it (in .git/config and argv): without credentials; those
        # reach Git through the environment of the Git processes (`git_env`).
        self.remote, self._auth_env, secrets_ = (
            split_remote(remote) if remote else (None, {}, ()))
        for value in secrets_:
            register_secret(value)   # masked in any text that still shows it
        self.git_timeout = git_timeout
        self._thread_lock = threading.Lock()
        self._repack: subprocess.Popen[bytes] | None = None
        self.repo = self._open_repo()

    def _open_repo(self) -> git.Repo:
        import git as gitmodule

        try:
            if (self.path / ".git").exists():
                repo = gitmodule.Repo(self.path)
            else:
                repo = self._create_repo()
        except gitmodule.GitCommandError as exc:
            raise HistoryError(f"history repository {self.path}: "
                               f"{error_text(exc)}") from None
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
                                       f"{error_text(exc)}") from None
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
                repo = gitmodule.Repo.clone_from(self.remote, directory, env=self.git_env(),
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

    def git_env(self) -> dict[str, str]:
        """Environment for Git subprocesses: never prompt, bounded SSH connects, and the
        remote's credentials when its URL came with them."""
        env = {"GIT_TERMINAL_PROMPT": "0", **self._auth_env}
        if "GIT_SSH_COMMAND" not in os.environ:
            env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o ConnectTimeout=10"
        return env

    def dirty_paths(self) -> list[str]:
        """Ledger files that differ from HEAD (or are not in it yet)."""
        out = self.repo.git.status("--porcelain", "--untracked-files=all", "--", HISTORY_DIR,
                                   HUMAN_LOG, ".gitattributes")
        return [line[3:].strip('"') for line in out.splitlines() if line.strip()]

    def stage(self, paths: Sequence[str]) -> None:
        """Stage `paths` (relative to the repository) as they are now; the caller holds
        `locked()`."""
        self.repo.index.add(list(paths))

    def commit(self, subjects: Sequence[Subject], author: Operator,
               paths: Sequence[str] = ()) -> None:
        """One commit of what is staged plus `paths`, authored by `author`.

        The caller holds `locked()`; nothing is committed when the files are unchanged.
        """
        import git as gitmodule

        if paths:
            self.stage(paths)
        index = self.repo.index
        if self.repo.head.is_valid() and index.write_tree() == self.repo.head.commit.tree:
            return  # nothing new (the lines were in an earlier commit)
        subject = pick_subject(subjects)
        body = "\n".join(s.text for s in subjects if s != subject)
        actor = gitmodule.Actor(author.name, author.email)
        index.commit(subject.text + (f"\n\n{body}\n" if body else ""), author=actor,
                     committer=actor, skip_hooks=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise Git work between threads and between processes on this ledger.

        Inside, Git lock files a killed console left behind are cleared first.
        """
        with self._thread_lock:
            lock_path = self.path / ".git" / "release-console.lock"
            with open(lock_path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    self._clear_stale_git_locks()
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _clear_stale_git_locks(self) -> None:
        """Remove Git lock files (`.git/index.lock` ...) a killed console left behind.

        Called holding the ledger's own lock: every console does its Git work under it,
        and the kernel drops it when a console dies, so a Git lock file seen here was left
        by a console that stopped mid-write - or, rarely, belongs to someone running git
        by hand in the ledger, which is given STALE_LOCK_SECONDS to finish first.
        """
        git_dir = self.path / ".git"
        for name in GIT_LOCK_FILES:
            lock = git_dir / name
            while True:
                try:
                    age = time.time() - lock.stat().st_mtime
                except FileNotFoundError:
                    break
                if age >= STALE_LOCK_SECONDS:
                    lock.unlink(missing_ok=True)
                    log.warning("history repository %s: removed the stale lock %s left by a "
                                "console that stopped", self.path, lock)
                    break
                time.sleep(min(0.2, STALE_LOCK_SECONDS - age))

    def maybe_repack(self) -> None:
        """Start a background `git repack` once loose objects pass REPACK_LOOSE_KIB.

        Every commit stores the whole record file as a new loose blob; `git gc --auto`
        counts objects, not bytes, so a big ledger would grow by megabytes per commit
        until something packs it (with deltas, a commit then costs a few bytes). Packing
        a big ledger takes many seconds, so - like git's own auto gc - it runs detached
        and the release does not wait; git keeps concurrent commits safe.
        """
        import git as gitmodule

        if self._repack is not None and self._repack.poll() is None:
            return
        try:
            with self.locked():
                counts = dict(line.split(": ", 1) for line in
                              self.repo.git.count_objects("-v").splitlines() if ": " in line)
        except (gitmodule.GitCommandError, OSError):
            return  # only an optimisation: the next release tries again
        if int(counts.get("size", "0")) > REPACK_LOOSE_KIB:
            self._repack = subprocess.Popen(
                ["git", "-C", str(self.path), "repack", "-d", "-q"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)

    def push(self, operator: Operator) -> PushResult:
        """Push the ledger branch when a remote is set; never raises, never loses commits.

        A push refused as non-fast-forward (another console pushed first) is fetched,
        merged (union merge of the record files) and pushed again - up to PUSH_ATTEMPTS
        times, after a short random pause that grows each time: the shards of one release
        (`deploy --shard`) end close together and push to one remote at once, and each
        round lets one more of them through.
        """
        import git as gitmodule

        if not self.remote:
            return PushResult(True, False, "no remote configured")
        with self.locked():
            if not self.repo.head.is_valid():
                return PushResult(True, False, "nothing to push yet")
            for attempt in range(PUSH_ATTEMPTS):
                try:
                    if attempt:
                        self.merge_remote(operator)
                    self._git_push()
                    return PushResult(True, True, ("merged and pushed to " if attempt else
                                                   "pushed to ") + scrub(self.remote, 200))
                except gitmodule.GitCommandError as exc:
                    porcelain = str(exc.stdout or "")
                    if not _behind(porcelain):
                        # The refused refs' lines are on stdout with --porcelain: the
                        # remote's reason ("pre-receive hook declined") goes with git's.
                        refused = [f"! {m['refs']} {m['summary']}"
                                   for m in PORCELAIN_REF.finditer(porcelain)
                                   if m["flag"] == "!"]
                        text = "\n".join([str(exc.stderr or exc), *refused])
                        return PushResult(False, False, _push_failure(self.remote, text))
                # Another console pushed in between: let it finish, then merge its records.
                time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
            return PushResult(False, False, _push_failure(
                self.remote, f"[rejected] still behind after {PUSH_ATTEMPTS} merges: other "
                             "consoles kept pushing"))

    def sync(self, operator: Operator) -> PushResult:
        """Fetch and merge the remote's records, then push the local ones."""
        import git as gitmodule

        if not self.remote:
            return PushResult(True, False, "no remote configured")
        with self.locked():
            try:
                self.merge_remote(operator)
            except gitmodule.GitCommandError as exc:
                return PushResult(False, False, _push_failure(self.remote, str(exc.stderr or exc)))
        return self.push(operator)

    def _git_push(self) -> None:
        with self.repo.git.custom_environment(**self.git_env()):
            # --porcelain: each ref's status on stdout, to decide by (`_behind`).
            self.repo.git.push("--porcelain", REMOTE, f"HEAD:refs/heads/{BRANCH}",
                               kill_after_timeout=self.git_timeout)

    def merge_remote(self, operator: Operator) -> None:
        """Fetch the remote and merge its records (the caller holds `locked()`).

        `operator` signs the merge commit. Raises git.GitCommandError.
        """
        env = dict(self.git_env(), GIT_AUTHOR_NAME=operator.name,
                   GIT_AUTHOR_EMAIL=operator.email,
                   GIT_COMMITTER_NAME=operator.name,
                   GIT_COMMITTER_EMAIL=operator.email)
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


def clusters_text(clusters: Sequence[str]) -> str:
    """Target clusters for a commit subject: the first few, then "+N more"."""
    names = list(clusters)
    if len(names) <= SUBJECT_CLUSTERS:
        return ",".join(names) or "-"
    return ",".join(names[:SUBJECT_CLUSTERS]) + f",+{len(names) - SUBJECT_CLUSTERS} more"


def subject(release: Mapping[str, Any], outcome: str) -> str:
    """The commit subject of a release (line) ending with `outcome`."""
    kind = release.get("kind", "release")
    return (f"{kind} {release.get('app')} {release.get('version')} -> "
            f"{clusters_text(release.get('targets') or ())} ({outcome})")


RECORD, STARTED, ENDED = 0, 1, 2   # Subject.rank: what a record's subject tells of a commit


@dataclass(frozen=True)
class Subject:
    """One record's line in a commit message, and its rank: a release's end (ENDED) or
    start (STARTED) names a commit before any other record (RECORD). The rank comes from
    the kind of record written, never from the text (a steer's `by` may end in ")")."""

    text: str
    rank: int = RECORD


def pick_subject(subjects: Sequence[Subject]) -> Subject:
    """The commit subject: a release's end, else its start, else the only record, else a
    count of the records."""
    ranked = [s for s in subjects if s.rank > RECORD]
    if ranked:
        top = max(s.rank for s in ranked)
        return [s for s in ranked if s.rank == top][-1]
    if len(subjects) == 1:
        return subjects[0]
    return Subject(f"{subjects[0].text} (+{len(subjects) - 1} more records)")


def error_text(error: BaseException, limit: int = 400) -> str:
    """Why a Git or OS call failed, as one line of at most `limit` characters (raised in
    a HistoryError, which scrubs it as every UserError)."""
    text = str(getattr(error, "stderr", "") or "").strip() or str(error) or type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _behind(porcelain: str) -> bool:
    """Whether a refused `git push --porcelain` was refused only because another
    console's push got there first: the ref `[rejected]` by git as not a fast-forward
    (it merges and pushes again), or `[remote rejected]` because the remote could not
    lock its branch. No ref line (the push never got to compare refs: no such remote,
    no access), or a hook's refusal, is no reason to merge and try again."""
    refs = [m["summary"] for m in PORCELAIN_REF.finditer(porcelain) if m["flag"] == "!"]
    return bool(refs) and all(
        summary.startswith("[rejected]") or (summary.startswith("[remote rejected]")
                                             and any(r in summary for r in REMOTE_LOCK_RACE))
        for summary in refs)


def _push_failure(remote: str, text: str) -> str:
    """A one-line reason from git's output: the remote's own words and the rejection."""
    lines = [line.strip().strip("'").strip() for line in text.splitlines()]
    lines = [re.sub(r"^stderr:\s*'?", "", line) for line in lines if line]
    telling = [line for line in lines if line.startswith(("remote:", "!", "fatal:"))
               or "rejected" in line]
    detail = "; ".join(dict.fromkeys(telling or lines[-2:]))
    return f"push to {scrub(remote, 200)} failed: {scrub(detail, 400)}"


__all__ = ["BRANCH", "ENDED", "RECORD", "REMOTE", "STARTED", "Repository", "Subject",
           "clusters_text", "error_text", "pick_subject", "subject"]
