"""A ledger remote with credentials in its URL (issue 11.8): pushed to and cloned from
over real HTTP with basic auth (`git http-backend`), while `.git/config`, every file of
the ledger and the argv of every process hold no credential."""

from __future__ import annotations

import base64
from pathlib import Path

from console.history import Ledger
from tests.history.conftest import ALICE, APP, git, remote_records


def files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_credentials_in_the_remote_url_reach_git_only_through_the_environment(
        http_remote, make_ledger) -> None:
    secret = http_remote.password
    header = base64.b64encode(f"{http_remote.user}:{secret}".encode()).decode()
    ledger = make_ledger(remote=http_remote.url())
    ledger.start_release("r1", version="1.0", targets=("a",))
    ledger.record_cluster("r1", "a", "healthy")
    pushed = ledger.finish_release("r1", "ok")
    assert pushed.ok and pushed.pushed, pushed.message
    assert secret not in pushed.message
    assert [r["id"] for r in remote_records(http_remote.bare) if r["type"] == "release"] == ["r1"]
    assert ("POST", f"/{http_remote.bare.name}/git-receive-pack", 200) in http_remote.requests
    # Nothing on disk: the remote URL in .git/config is credential-free.
    url = git(ledger.path, "remote", "get-url", "origin").strip()
    assert url == f"http://127.0.0.1:{http_remote.port}/{http_remote.bare.name}"
    assert files_holding(ledger.path, secret) == []
    assert files_holding(ledger.path, header) == []
    # Nor in any process's argv while Git talked to the server.
    seen = [line for snapshot in http_remote.cmdlines for line in snapshot]
    assert any("git" in line and ("push" in line or "remote-http" in line) for line in seen)
    assert not [line for line in seen if secret in line or header in line]


def test_a_new_machine_clones_with_the_credentials_and_keeps_none(
        http_remote, make_ledger) -> None:
    first = make_ledger("first", remote=http_remote.url())
    first.start_release("r1", version="1.0", targets=("a",))
    assert first.finish_release("r1", "ok").pushed
    second = make_ledger("second", remote=http_remote.url())
    assert [r.id for r in second.releases()] == ["r1"]
    assert ("GET", f"/{http_remote.bare.name}/info/refs?service=git-upload-pack", 200) in \
        http_remote.requests
    assert files_holding(second.path, http_remote.password) == []


def test_a_ledger_an_older_console_pointed_at_a_credential_url_is_cleaned(
        http_remote, tmp_path: Path) -> None:
    path = tmp_path / "old"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "remote", "add", "origin", http_remote.url())
    ledger = Ledger(path, APP, remote=http_remote.url(), operator=ALICE, git_timeout=20)
    try:
        assert files_holding(path / ".git", http_remote.password) == []
        ledger.start_release("r1", version="1.0", targets=("a",))
        assert ledger.finish_release("r1", "ok").pushed
    finally:
        ledger.close()


def test_wrong_credentials_fail_the_push_without_showing_them(http_remote, make_ledger) -> None:
    wrong = "not-the-password-4711"
    ledger = make_ledger(remote=http_remote.url(password=wrong))
    ledger.start_release("r1", version="1.0", targets=("a",))
    pushed = ledger.finish_release("r1", "ok")
    assert not pushed.ok and wrong not in pushed.message
    assert any(status == 401 for _, _, status in http_remote.requests)
    # The record is kept locally for a later push.
    assert [r.id for r in ledger.releases()] == ["r1"]
