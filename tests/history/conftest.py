"""Real Git for the ledger tests: work repositories, bare remotes, and a git helper.

Also the local receivers the notifier talks to: an HTTP server standing in for a Slack
webhook and an `aiosmtpd` SMTP server, both on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.servers import free_port

from console.history import Ledger, Operator

APP = "user-service"
ALICE = Operator("alice", "alice@example.com")


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` and return its stdout (fails the test on a non-zero exit)."""
    out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout


@pytest.fixture
def bare_remote(tmp_path: Path) -> Path:
    """An empty bare repository (the shared history remote), HEAD on `main`."""
    path = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True, timeout=30)
    git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    return path


def reject_pushes(remote: Path, reject: bool = True) -> None:
    """Install (or remove) a pre-receive hook on `remote` that refuses every push."""
    hook = remote / "hooks" / "pre-receive"
    if reject:
        hook.write_text("#!/bin/sh\necho 'history is frozen for maintenance' >&2\nexit 1\n")
        hook.chmod(0o755)
    else:
        hook.unlink()


@pytest.fixture
def make_ledger(tmp_path: Path) -> Iterator[Callable[..., Ledger]]:
    """A factory of ledgers under tmp_path, closed at the end of the test."""
    made: list[Ledger] = []

    def make(name: str = "work", remote: Path | None = None, **kwargs) -> Ledger:
        kwargs.setdefault("operator", ALICE)
        ledger = Ledger(tmp_path / name, APP, remote=str(remote) if remote else None,
                        git_timeout=20, **kwargs)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        ledger.close()


def remote_records(remote: Path, app: str = APP) -> list[dict]:
    """The JSON records on the remote's main branch."""
    text = git(remote, "show", f"main:history/{app}.jsonl")
    return [json.loads(line) for line in text.splitlines() if line]


# --- the webhook receiver ------------------------------------------------------------

@dataclass
class Receiver:
    """A local HTTP server that records POSTed JSON bodies and answers `status`."""

    url: str
    bodies: list[dict] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    received: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """A running receiver on 127.0.0.1 (http.server in a thread)."""
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if receiver.delay:
                threading.Event().wait(receiver.delay)
            receiver.bodies.append(json.loads(body))
            try:
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status < 300 else b"no_service")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout test)
            receiver.received.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


# --- the SMTP server -----------------------------------------------------------------

@dataclass
class Mailbox:
    """What the SMTP server received: (envelope sender, recipients, message text)."""

    port: int
    messages: list[tuple[str, list[str], str]] = field(default_factory=list)


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A plain aiosmtpd server on a free 127.0.0.1 port (port 0 does not work with it)."""
    from aiosmtpd.controller import Controller

    box = Mailbox(port=free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
            box.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                 envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def no_git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A HOME without git config, and $USER set: the operator must come from $USER."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("USER", "carol")
    for name in ("BUILD_USER_ID", "GITLAB_USER_LOGIN", "GITHUB_ACTOR"):
        monkeypatch.delenv(name, raising=False)   # CI's build user would come first
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                 "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)


# --- a Git remote over HTTP with basic auth --------------------------------------------

@dataclass
class HttpRemote:
    """A bare repository served by `git http-backend` behind basic auth on 127.0.0.1.

    `cmdlines` holds, for every request, the command lines of every process running at
    that moment (read from /proc while the client's Git waits for the answer).
    """

    bare: Path
    port: int
    user: str
    password: str
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    cmdlines: list[list[str]] = field(default_factory=list)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The remote's URL with credentials in it (the form CI hands out)."""
        return (f"http://{user or self.user}:{password or self.password}@127.0.0.1:"
                f"{self.port}/{self.bare.name}")


def _process_cmdlines() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"))
            except OSError:
                continue   # gone meanwhile
    return found


@pytest.fixture
def http_remote(bare_remote: Path) -> Iterator[HttpRemote]:
    """`bare_remote` over HTTP (smart protocol, push allowed) with basic auth."""
    import base64

    remote = HttpRemote(bare_remote, 0, "ci-bot", "s3cr3t-T0KEN-in-the-url")
    expected = "Basic " + base64.b64encode(f"{remote.user}:{remote.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            remote.cmdlines.append(_process_cmdlines())
            if self.headers.get("Authorization") != expected:
                remote.requests.append((self.command, self.path, 401))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="ledger"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self._body()
            path, _, query = self.path.partition("?")
            env = {"PATH": "/usr/bin:/bin", "GIT_PROJECT_ROOT": str(remote.bare.parent),
                   "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
                   "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_USER": remote.user,
                   "REMOTE_ADDR": "127.0.0.1",
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body))}
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            done = subprocess.run(["git", "http-backend"], input=body, env=env,
                                  capture_output=True, timeout=60)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            remote.requests.append((self.command, self.path, status))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        do_GET = do_POST = _serve  # noqa: N815 - http.server's naming

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    remote.port = server.server_address[1]
    git(bare_remote, "config", "http.receivepack", "true")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield remote
    server.shutdown()
    server.server_close()
