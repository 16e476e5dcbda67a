"""A cluster client goes through the proxy the environment names (`https_proxy`, `no_proxy`,
as the Kubernetes client library reads them) or the kubeconfig's `proxy-url`, and sees a
change of those variables at its next client (the console reads them once, not per
client)."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator

import pytest

from console.kube.client import KubeClient, new_api_client


class ConnectProxy:
    """A real HTTP CONNECT proxy on a free loopback port; notes each tunnel's target."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.targets: list[str] = []
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._tunnel, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _tunnel(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b" ", 2)[:2]
            if method != b"CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                return
            self.targets.append(target.decode())
            host, port = target.decode().rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pair = {conn: upstream, upstream: conn}
                while True:
                    ready, _, _ = select.select(list(pair), [], [], 10)
                    if not ready:
                        return
                    for sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            return
                        pair[sock].sendall(data)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    found = ConnectProxy()
    yield found
    found.close()


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy",
                 "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _read_namespace(cid: str, kubeconfig: dict) -> None:
    client = KubeClient(cid, new_api_client(cid, kubeconfig), 10.0)
    try:
        client.request("GET", "/api/v1/namespaces/default")
    finally:
        client.close()


def test_the_environment_s_proxy_is_used_and_a_change_is_seen(sim_fleet, proxy, monkeypatch):
    fleet = sim_fleet(["a"])
    server = fleet.url("a").removeprefix("https://")
    _read_namespace("a", fleet.kubeconfig("a"))
    assert proxy.targets == []                       # no variable: straight to the server

    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    _read_namespace("a", fleet.kubeconfig("a"))
    assert proxy.targets == [server]

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    _read_namespace("a", fleet.kubeconfig("a"))
    assert proxy.targets == [server]                 # no_proxy names the server: not again

    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("all_proxy", proxy.url)
    _read_namespace("a", fleet.kubeconfig("a"))
    assert proxy.targets == [server, server]


def test_the_kubeconfig_s_proxy_url_wins_over_the_environment(sim_fleet, proxy, monkeypatch):
    fleet = sim_fleet(["a"])
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")   # nothing listens there
    kubeconfig = fleet.kubeconfig("a")
    kubeconfig["clusters"][0]["cluster"]["proxy-url"] = proxy.url
    _read_namespace("a", kubeconfig)
    assert proxy.targets == [fleet.url("a").removeprefix("https://")]
