"""A client's calls go over plain connections of its own (`KubeClient.direct`, every
client's default) instead of urllib3's pool: it reads what the pooled client reads,
keeps its connection for its next call, sends text as UTF-8, and fails exactly as the
pooled client fails - the same `ClusterError` text, status and `unreachable` for a
refused port, a server the CA does not vouch for, an answer later than the timeout and
a cluster that keeps answering 500. A server behind a `tls-server-name` stays on
urllib3's pool (the plain connection names the host it dials)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from console.kube.client import CONNECT_TIMEOUT, ClusterError, KubeClient, new_api_client

READ_BOUND = 9.0        # under the 10 s read timeout the clients are made with


def _client(cid: str, kubeconfig: dict, one_shot: bool) -> KubeClient:
    """A direct client (`one_shot`, as `status` reads: no TLS session kept) or one on
    urllib3's pool, the reference."""
    client = KubeClient(cid, new_api_client(cid, kubeconfig), 10.0)
    client.direct = one_shot
    client.keep_sessions = not one_shot
    return client


def _aimed(kubeconfig: dict, server: str) -> dict:
    cluster = kubeconfig["clusters"][0]
    return {**kubeconfig, "clusters": [{**cluster, "cluster": {**cluster["cluster"],
                                                               "server": server}}]}


def _pools(client: KubeClient) -> int:
    return len(client.api.rest_client.pool_manager.pools)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _failure(client: KubeClient, path: str, method: str = "GET",
             **kwargs: Any) -> tuple[str, Any, bool]:
    with pytest.raises(ClusterError) as caught:
        client.request(method, path, **kwargs)
    return caught.value.reason, caught.value.status, caught.value.unreachable


def test_a_one_shot_client_reads_what_the_pooled_one_reads_on_one_connection(sim_fleet):
    fleet = sim_fleet(["a"])
    pooled, one_shot = (_client("a", fleet.kubeconfig("a"), flag) for flag in (False, True))
    try:
        path = "/api/v1/namespaces"
        assert one_shot.request("GET", path)["items"] == pooled.request("GET", path)["items"]
        first = one_shot._direct.idle()[0]._conn
        assert one_shot.request("GET", "/version") == pooled.request("GET", "/version")
        assert [c._conn for c in one_shot._direct.idle()] == [first]    # kept, reused
        assert first.sock is not None
        assert (_pools(one_shot), _pools(pooled)) == (0, 1)
        # A 404 is the same API error either way (the kept connection still serves).
        missing = "/api/v1/namespaces/nowhere"
        assert _failure(one_shot, missing) == _failure(pooled, missing)
        assert one_shot.request("GET", "/version")["gitVersion"]
        # A text body goes as UTF-8, as urllib3 sends it (http.client's default: Latin-1).
        body = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "utf"}, ' \
            '"data": {"city": "Zürich ✓"}}'
        one_shot.request("POST", "/api/v1/namespaces/default/configmaps", body=body,
                         retry=False)
        assert pooled.request("GET", "/api/v1/namespaces/default/configmaps/utf")["data"] == \
            {"city": "Zürich ✓"}
    finally:
        one_shot.close()
        pooled.close()
    assert first.sock is None                                         # closed with it


def test_a_one_shot_client_fails_as_the_pooled_one_fails(sim_fleet):
    fleet = sim_fleet(["a", "slow", "broken"], seed=7)
    other = sim_fleet(["c"])                                     # another CA
    fleet.set_faults("slow", latency=3.0)
    fleet.set_faults("broken", error_rate=1.0, error_codes=[500])
    cases = {
        "refused": (fleet.kubeconfig("a"), f"https://127.0.0.1:{_closed_port()}", {}),
        "wrong CA": (fleet.kubeconfig("a"), other.url("c"), {"retry": False}),
        "too slow": (fleet.kubeconfig("slow"), None, {"timeout": 0.5}),
        "500s": (fleet.kubeconfig("broken"), None, {}),
    }
    seen = {}
    for name, (kubeconfig, server, kwargs) in cases.items():
        if server is not None:
            kubeconfig = _aimed(kubeconfig, server)
        path = "/api/v1/namespaces/default/configmaps"
        failures = []
        for one_shot in (False, True):
            client = _client("a", kubeconfig, one_shot)
            try:
                failures.append(_failure(client, path, **kwargs))
                assert _pools(client) == (0 if one_shot else 1), name
            finally:
                client.close()
        assert failures[1] == failures[0], name
        seen[name] = failures[1]
    assert seen["refused"][0].endswith(": connection refused") and seen["refused"][2]
    assert "CERTIFICATE_VERIFY_FAILED" in seen["wrong CA"][0] and seen["wrong CA"][2]
    assert seen["too slow"] == ("unreachable (https://127.0.0.1:%d): timed out waiting for "
                                "the API server" % fleet.port("slow"), None, True)
    assert seen["500s"][1] == 500 and not seen["500s"][2]


def test_a_server_behind_a_tls_server_name_stays_on_urllib3s_pool(sim_fleet):
    fleet = sim_fleet(["a"])
    kubeconfig = fleet.kubeconfig("a")
    kubeconfig["clusters"][0]["cluster"]["tls-server-name"] = "localhost"
    client = _client("a", kubeconfig, True)
    try:
        assert client.request("GET", "/version")["gitVersion"]
        assert _pools(client) == 1 and client._direct is False
    finally:
        client.close()


def test_a_handshake_that_never_comes_gets_the_connect_timeout_on_both_paths(sim_fleet):
    # A server that takes the TCP connect (the kernel does, from its backlog) and never
    # answers the TLS hello. urllib3's pool gives the handshake the connect timeout (5 s
    # of the request's 10); the plain connection gave it the read timeout (10 s) before.
    fleet = sim_fleet(["a"])
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        kubeconfig = _aimed(fleet.kubeconfig("a"),
                            f"https://127.0.0.1:{mute.getsockname()[1]}")
        failures, took = [], []
        for one_shot in (False, True):
            client = _client("a", kubeconfig, one_shot)
            started = time.monotonic()
            try:
                failures.append(_failure(client, "/version", retry=False))
            finally:
                took.append(time.monotonic() - started)
                client.close()
    assert failures[1] == failures[0]
    assert failures[1][2], failures        # unreachable, as a timeout is
    # Both gave up at the connect timeout (CONNECT_TIMEOUT), well before the read's.
    assert all(CONNECT_TIMEOUT - 0.5 < t < READ_BOUND for t in took), took


def test_a_kept_connection_gives_each_call_its_own_read_timeout(sim_fleet):
    # The first call (/version: no simulated latency) opens the connection with a 10 s
    # read timeout; the next one asks for 0.5 s of a cluster that answers resource
    # reads after 3 s. Before, the kept connection kept the first call's 10 s: the read
    # waited the 3 s and succeeded, where the pooled client gives up at 0.5 s.
    fleet = sim_fleet(["slow"], seed=5)
    fleet.set_faults("slow", latency=3.0)
    path = "/api/v1/namespaces/default/configmaps"
    failures, took = [], []
    for one_shot in (False, True):
        client = _client("slow", fleet.kubeconfig("slow"), one_shot)
        try:
            assert client.request("GET", "/version", timeout=10)["gitVersion"]
            started = time.monotonic()
            failures.append(_failure(client, path, timeout=0.5, retry=False))
            took.append(time.monotonic() - started)
            if one_shot:
                assert not client._direct.idle()      # a timed-out connection is dropped
        finally:
            client.close()
    assert failures[1] == failures[0], failures
    assert failures[1][2], failures          # unreachable, as a timeout is
    assert all(t < 2.5 for t in took), took  # the 0.5 s, not the server's 3 s


def test_a_client_serves_its_threads_at_once_on_connections_it_keeps(sim_fleet):
    # Every client calls directly by default (a release's pre-flight, leases, applies):
    # threads calling at once each get a connection; once read they are kept, up to
    # urllib3's pool size, and later calls reuse them - no urllib3 pool at all.
    import threading

    fleet = sim_fleet(["a"])
    fleet.set_faults("a", latency=0.3)
    client = KubeClient("a", new_api_client("a", fleet.kubeconfig("a")), 10.0)
    path = "/api/v1/namespaces/default"
    start = threading.Barrier(6)
    answers: list[str] = []

    def call() -> None:
        start.wait()
        answers.append(client.request("GET", path)["metadata"]["name"])

    try:
        threads = [threading.Thread(target=call) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == ["default"] * 6
        kept = [c._conn for c in client._direct.idle()]
        assert 2 <= len(kept) <= 6 and all(c is not None and c.sock for c in kept)
        for _ in range(4):
            assert client.request("GET", path)["metadata"]["name"] == "default"
        assert {id(c._conn) for c in client._direct.idle()} == {id(c) for c in kept}
        assert _pools(client) == 0
    finally:
        client.close()
    assert all(c.sock is None for c in kept)                           # closed with it


def test_a_call_in_flight_when_the_client_closes_does_not_keep_its_connection(sim_fleet):
    # A call still waiting for its answer when `KubeClient.close()` runs (a release
    # ending while a lease renewal or a status read is out) gives its connection back
    # to the closed pool once read. Before, the pool kept it: open, in a pool nobody
    # would close again, until garbage-collected.
    import threading

    from tests.waiting import wait_for

    fleet = sim_fleet(["a"], seed=3)
    client = KubeClient("a", new_api_client("a", fleet.kubeconfig("a")), 10.0)
    path = "/api/v1/namespaces/default"
    answers: list[Any] = []
    try:
        assert client.request("GET", path)["metadata"]["name"] == "default"
        pool = client._direct
        [kept] = pool.idle()
        assert kept._conn is not None and kept._conn.sock is not None
        fleet.set_faults("a", latency=1.0)
        caller = threading.Thread(
            target=lambda: answers.append(client.request("GET", path)["metadata"]["name"]))
        caller.start()
        wait_for(lambda: not pool.idle(), "the call to take the kept connection")
        client.close()                      # the call is out on that connection
        caller.join(30)
        assert not caller.is_alive()
        assert answers == ["default"]       # the call itself is answered
        assert pool.idle() == []
        assert kept._conn is None, "the connection given back after close is still open"
    finally:
        client.close()


CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def _configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"k": "v"}}


def test_a_connection_the_server_closed_while_idle_is_not_reused(sim_fleet):
    # The server closes the client's kept connection between two calls (an idle timeout:
    # `SimFleet.close_idle`). The next calls - a read, and a create that must not be
    # sent twice (POST, retry=False) - go on a new connection, without an error; the
    # create is done once.
    from tests.waiting import wait_for

    fleet = sim_fleet(["a"], seed=3)
    client = KubeClient("a", new_api_client("a", fleet.kubeconfig("a")), 10.0)
    try:
        assert client.request("GET", "/api/v1/namespaces/default")["kind"] == "Namespace"
        [kept] = client._direct.idle()
        first = kept._conn
        assert fleet.close_idle("a") == 1
        wait_for(kept.dropped, "the client's socket to show the server's close")
        client.request("POST", CONFIGMAPS, body=_configmap("once"), retry=False)
        assert client.request("GET", f"{CONFIGMAPS}/once")["data"] == {"k": "v"}
        assert fleet.counters("a")["by_verb_resource"].get("create configmaps") == 1
        assert first.sock is None                                   # closed, not reused
        assert [c._conn for c in client._direct.idle()] != [first]
    finally:
        client.close()


def test_a_call_sent_as_the_server_closes_its_kept_connection(sim_fleet):
    # The idle timeout's race: the server resets the kept connection just as a call
    # arrives on it, unserved (sim `drop_reused`). A read is sent again at once on a new
    # connection, even one that may not be retried (retry=False: one try) - no error.
    # A create (POST) is not: the client cannot tell whether the server took it, so it
    # fails ('connection lost') and is sent once, never twice; the caller decides.
    # (Before: the read failed too - 'unreachable ...: connection lost'.)
    fleet = sim_fleet(["a"], seed=3)
    client = KubeClient("a", new_api_client("a", fleet.kubeconfig("a")), 10.0)
    path = "/api/v1/namespaces/default"
    try:
        assert client.request("GET", path)["kind"] == "Namespace"
        fleet.set_faults("a", drop_reused=1)
        assert client.request("GET", path, retry=False)["kind"] == "Namespace"
        assert fleet.counters("a")["dropped_requests"] == 1
        reads = fleet.counters("a")["by_verb_resource"]["get namespaces"]
        assert reads == 2, reads                    # the first call, and the one sent again

        fleet.set_faults("a", drop_reused=1)
        reason, status, unreachable = _failure(client, CONFIGMAPS, method="POST",
                                               body=_configmap("maybe"), retry=False)
        assert reason.endswith(": connection lost") and unreachable, reason
        counters = fleet.counters("a")
        assert counters["dropped_requests"] == 2
        assert "create configmaps" not in counters["by_verb_resource"]   # sent once, dropped
        assert fleet.get("a", "/configmaps", "default", "maybe") is None
    finally:
        client.close()
