"""Release locks on a simulated cluster: one Lease per app and cluster, through the real client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from console.errors import UserError
from console.kube.client import new_api_client
from console.locks import ClusterLease, LockError, LockHeld, ReleaseLock, holder_identity

NAMESPACE = "shop"


@pytest.fixture
def fleet(sim_fleet):
    """Three simulated clusters, each with the app namespace."""
    from kubernetes import client as k8s

    fleet = sim_fleet(["a", "b", "c"], seed=1105)
    for cluster in ("a", "b", "c"):
        api = new_api_client(cluster, fleet.kubeconfig(cluster))
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}},
                                             _request_timeout=10)
        api.close()
    return fleet


@pytest.fixture
def client(fleet) -> Callable:
    """A new, separate ApiClient per call (as two consoles would each have)."""
    made = []

    def make(cluster: str = "a", token: str | None = None):
        api = new_api_client(cluster, fleet.kubeconfig(cluster, token))
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


def lease_of(client, cluster: str, app: str, release: str, user: str, **kwargs) -> ClusterLease:
    return ClusterLease(client(cluster), cluster, NAMESPACE, app,
                        holder_identity(release, user), **kwargs)


def test_concurrent_acquisitions_exactly_one_wins_and_the_others_learn_who(client) -> None:
    for round_no in range(5):
        app = f"web{round_no}"
        contenders = [lease_of(client, "a", app, f"rel-{n}", f"user{n}") for n in range(4)]
        barrier = threading.Barrier(len(contenders))
        outcomes: dict[int, object] = {}

        def contend(n: int) -> None:
            barrier.wait()
            try:
                contenders[n].acquire()
                outcomes[n] = "won"
            except UserError as err:
                outcomes[n] = err

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        winners = [n for n, outcome in outcomes.items() if outcome == "won"]
        assert len(winners) == 1, outcomes
        winner = contenders[winners[0]].identity
        for n, outcome in outcomes.items():
            if n != winners[0]:
                assert isinstance(outcome, LockHeld), outcome
                assert outcome.holder.identity == winner
                assert winner in str(outcome) and "expires" in str(outcome)
                assert outcome.exit_code == 2


def test_a_held_lease_refuses_the_second_release_naming_the_holder(client) -> None:
    first = ReleaseLock.for_clusters({"a": (client("a"), NAMESPACE), "b": (client("b"), NAMESPACE)},
                                     "user-service", "rel-1", user="alice")
    first.acquire()
    try:
        second = ReleaseLock.for_clusters({"b": (client("b"), NAMESPACE),
                                           "c": (client("c"), NAMESPACE)},
                                          "user-service", "rel-2", user="bob")
        with pytest.raises(LockHeld) as refused:
            second.acquire()
        message = str(refused.value)
        assert message.startswith("cluster 'b': user-service is being released by alice@")
        assert "/rel-1 (lease release-console-user-service in namespace shop" in message
        # All or nothing: the refused release keeps no lease on c.
        assert lease_of(client, "c", "user-service", "x", "y").holder() is None
    finally:
        assert first.release() == []
    # Given back at the end: the next release takes both at once.
    third = ReleaseLock.for_clusters({"b": (client("b"), NAMESPACE),
                                      "c": (client("c"), NAMESPACE)},
                                     "user-service", "rel-3", user="bob")
    with third:
        holder = lease_of(client, "b", "user-service", "x", "y").holder()
        assert holder is not None and holder.identity.endswith("/rel-3")


def test_an_expired_lease_is_taken_over(client) -> None:
    dead = lease_of(client, "a", "user-service", "rel-1", "alice", duration=1)
    dead.acquire()              # and its console dies: nobody renews
    fresh = lease_of(client, "a", "user-service", "rel-2", "bob")
    with pytest.raises(LockHeld):
        fresh.acquire()
    time.sleep(1.3)
    fresh.acquire()
    lease = fresh.read()
    assert lease["spec"]["holderIdentity"] == fresh.identity
    assert lease["spec"]["leaseTransitions"] == 1
    assert dead.renew() is False   # the old holder notices it lost the lease


def test_renewal_keeps_the_lease_alive_past_its_duration(client) -> None:
    lost: list = []
    lock = ReleaseLock.for_clusters({"a": (client("a"), NAMESPACE)}, "user-service", "rel-1",
                                    user="alice", duration=2,
                                    on_lost=lambda *args: lost.append(args))
    with lock:
        time.sleep(3.2)         # longer than the duration: only renewals keep it
        with pytest.raises(LockHeld):
            lease_of(client, "a", "user-service", "rel-2", "bob").acquire()
    assert lost == [] and lock.lost == {}


def test_a_missing_permission_is_a_clear_error(fleet, client) -> None:
    token = fleet.add_token("a", [{"verbs": ["get", "list"], "apiGroups": ["*"],
                                   "resources": ["*"]}])
    lease = ClusterLease(client("a", token), "a", NAMESPACE, "user-service",
                         holder_identity("rel-1", "alice"))
    with pytest.raises(LockError, match=r"cluster 'a': not allowed to create lease "
                                        r"release-console-user-service in namespace shop "
                                        r"\(403\)"):
        lease.acquire()


def test_a_missing_namespace_and_an_unreachable_cluster_are_clear_errors(fleet, client) -> None:
    lease = ClusterLease(client("a"), "a", "nowhere", "user-service",
                         holder_identity("rel-1", "alice"))
    with pytest.raises(LockError, match="namespace 'nowhere' does not exist"):
        lease.acquire()
    api = client("b")
    fleet.kill("b")
    lease = ClusterLease(api, "b", NAMESPACE, "user-service", holder_identity("rel-1", "alice"),
                         timeout=2)
    began = time.monotonic()
    with pytest.raises(LockError, match="cluster 'b': cannot check the release lock: "
                                        "unreachable"):
        lease.acquire()
    assert time.monotonic() - began < 10


def test_a_flaky_cluster_still_gives_exactly_one_winner(fleet, client) -> None:
    # 15%: one call in ~90,000 exhausts its 6 tries (at 30% one in 1,400 did, and a CI run
    # met it); still several injected errors per run, which is what the test is about.
    fleet.set_faults("c", error_rate=0.15)
    contenders = [lease_of(client, "c", "user-service", f"rel-{n}", f"u{n}") for n in range(2)]
    results = []
    for lease in contenders:
        try:
            lease.acquire()
            results.append("won")
        except LockHeld as err:
            results.append(err.holder.identity)
    assert results == ["won", contenders[0].identity]
