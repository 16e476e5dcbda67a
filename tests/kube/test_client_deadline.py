"""`KubeClient.request(deadline=, cancel=)`: what bounds the shard board's cleanup
(`console.engine.shard_split`). A deadline holds the whole call - a new connection's
connect and handshake included, on both the plain connections and urllib3's pool - and
no retry starts past it; `cancel` set while a call waits to retry ends it there."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from console.kube.client import DEADLINE_PASSED, ClusterError, KubeClient, new_api_client
from tests.kube.test_direct_calls import _aimed
from tests.waiting import wait_for

PATH = "/api/v1/namespaces/default/configmaps"


def _client(cid: str, kubeconfig: dict, direct: bool) -> KubeClient:
    client = KubeClient(cid, new_api_client(cid, kubeconfig), 10.0)
    client.direct = direct
    return client


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "pool"])
def test_a_deadline_holds_a_handshake_that_never_comes(sim_fleet, direct):
    # The TCP connect is taken (the kernel's backlog), the TLS hello never answered:
    # without a deadline the handshake gets the 5 s connect timeout, and the answer the
    # 10 s read timeout after it; with one 1 s away the call ends then.
    fleet = sim_fleet(["a"])
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        client = _client("a", _aimed(fleet.kubeconfig("a"),
                                     f"https://127.0.0.1:{mute.getsockname()[1]}"), direct)
        started = time.monotonic()
        try:
            with pytest.raises(ClusterError):
                client.request("GET", "/version", deadline=started + 1.0)
        finally:
            client.close()
    assert time.monotonic() - started < 2.5


def test_no_retry_starts_past_the_deadline_and_none_once_cancelled(sim_fleet):
    # Every read answered 429 with Retry-After 2 s: six tries take 10 s. With a deadline
    # 3 s away the call ends by it (the 429 raised); with `cancel` set during the first
    # wait to retry, it ends at once.
    fleet = sim_fleet(["busy"], seed=3)
    fleet.set_faults("busy", error_rate=1.0, error_codes=[429], retry_after=2)
    client = _client("busy", fleet.kubeconfig("busy"), True)
    try:
        started = time.monotonic()
        with pytest.raises(ClusterError) as caught:
            client.request("GET", PATH, deadline=started + 3.0)
        assert caught.value.status == 429
        assert time.monotonic() - started < 3.5
        with pytest.raises(ClusterError) as caught:
            client.request("GET", PATH, deadline=time.monotonic() - 1)
        assert caught.value.reason == DEADLINE_PASSED
        cancel = threading.Event()
        before = fleet.counters("busy")["injected_errors"]
        ended: dict[str, float] = {}

        def call() -> None:
            try:
                client.request("GET", PATH, cancel=cancel)
            except ClusterError:
                ended["at"] = time.monotonic()
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        wait_for(lambda: fleet.counters("busy")["injected_errors"] > before, timeout=30,
                 what="the first try answered 429")
        cancelled = time.monotonic()
        cancel.set()
        caller.join(30)
        assert ended["at"] - cancelled < 0.5, ended["at"] - cancelled
        assert fleet.counters("busy")["injected_errors"] == before + 1   # no retry
    finally:
        client.close()
