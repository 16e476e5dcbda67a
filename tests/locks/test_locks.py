"""Release locks on a simulated cluster: one Lease per app and cluster, through the real client."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from console.errors import UserError
from console.kube.client import KubeClient, new_api_client
from console.locks import (ClusterLease, Clock, LockError, LockHeld, ProcessId, ReleaseLock,
                           holder_identity, this_process)
from tests.waiting import wait_for

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
    dead = ClusterLease(client("a"), "a", NAMESPACE, "user-service", "alice@far:7/rel-1",
                        duration=1, process=FAR)
    dead.acquire()              # and its console (on another machine) dies: nobody renews
    clock = DrivenClock()
    fresh = lease_of(client, "a", "user-service", "rel-2", "bob", clock=clock)
    with pytest.raises(LockHeld):
        fresh.acquire()         # fresh by its renewTime: refused at once
    clock.sleep(1.3)            # time passes here (nothing changes on the lease)
    fresh.acquire()
    lease = fresh.read()
    assert lease["spec"]["holderIdentity"] == fresh.identity
    assert lease["spec"]["leaseTransitions"] == 1
    assert dead.renew() is False   # the old holder notices it lost the lease


def test_renewal_keeps_the_lease_alive_past_its_duration(fleet, client) -> None:
    lost: list = []
    lock = ReleaseLock.for_clusters({"a": (client("a"), NAMESPACE)}, "user-service", "rel-1",
                                    user="alice", duration=2,
                                    on_lost=lambda *args: lost.append(args))

    def renewed_at() -> datetime:
        spec = fleet.get("a", "coordination.k8s.io/leases", NAMESPACE,
                         "release-console-user-service")["spec"]
        return datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))

    with lock:
        # Until the lease was renewed past the time it would have expired without.
        expiry = renewed_at() + timedelta(seconds=2)
        deadline = time.monotonic() + 30
        while renewed_at() <= expiry:
            assert time.monotonic() < deadline, "the lease was never renewed past its duration"
            time.sleep(0.05)
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


# --- one call path (issue 10 item 5) -------------------------------------------------------

def test_lease_calls_go_through_the_cluster_client(fleet) -> None:
    """The engine hands its KubeClient over: the lease shares its timeouts and retries."""
    fleet.set_faults("a", error_rate=0.3, error_codes=[500, 429], retry_after=0)
    kube = KubeClient("a", new_api_client("a", fleet.kubeconfig("a")), timeout=5)
    try:
        lease = ClusterLease(kube, "a", NAMESPACE, "user-service",
                             holder_identity("rel-1", "alice"))
        assert lease.kube is kube
        before = fleet.counters("a")["injected_errors"]
        lease.acquire()
        for _ in range(10):
            assert lease.renew() is True
        lease.release()
        assert lease.read()["spec"].get("holderIdentity") is None
        assert fleet.counters("a")["injected_errors"] > before   # retried by the client
    finally:
        kube.close()


# --- who the holder is (issue 11 item 6) ---------------------------------------------------

def _gone_pid() -> int:
    """The pid of a process that ran here and ended."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=30, check=True)
    return int(proc.stdout)


def _holder(client, process: ProcessId, release: str = "rel-1", **kwargs) -> ClusterLease:
    lease = ClusterLease(client("a"), "a", NAMESPACE, "user-service",
                         f"bob@{process.host}:{process.pid}/{release}", process=process,
                         **kwargs)
    lease.acquire()
    return lease


def test_a_same_hostname_holder_in_another_container_is_not_taken_as_dead(client) -> None:
    me = this_process()
    # Same hostname (a container's default), a pid that runs nothing *here* - but another
    # pid namespace: that pid means another process table. Its lease is fresh.
    other = ProcessId(me.host, _gone_pid(), me.boot_id, "pid:[4026530000]", "4242")
    first = _holder(client, other)
    with pytest.raises(LockHeld, match=f"bob@{me.host}:{other.pid}/rel-1"):
        lease_of(client, "a", "user-service", "rel-2", "alice").acquire()
    first.release()
    # Another machine (another boot id), same hostname: not a sure match either.
    elsewhere = ProcessId(me.host, other.pid, "0c0ffee0-0000-4000-8000-000000000000",
                          me.pid_ns, "4242")
    _holder(client, elsewhere, "rel-3")
    with pytest.raises(LockHeld, match="/rel-3"):
        lease_of(client, "a", "user-service", "rel-2", "alice").acquire()


def test_a_holder_surely_gone_here_is_taken_over_at_once(client) -> None:
    me = this_process()
    assert me.boot_id and me.pid_ns and me.start      # Linux: /proc tells
    # Same boot, same pid namespace, and its pid runs no more: killed here.
    _holder(client, ProcessId(me.host, _gone_pid(), me.boot_id, me.pid_ns, "4242"))
    taker = lease_of(client, "a", "user-service", "rel-2", "alice")
    taker.acquire()
    assert taker.read()["spec"]["holderIdentity"] == taker.identity
    # A pid that runs again, as a process started at another time: the holder is gone too.
    reused = ProcessId(me.host, me.pid, me.boot_id, me.pid_ns, str(int(me.start) + 1))
    taker.release()
    _holder(client, reused, "rel-3")
    lease_of(client, "a", "user-service", "rel-4", "alice").acquire()
    # The very same process (pid and start time): alive, refused.
    _holder_alive = lease_of(client, "a", "user-service", "rel-5", "carol")
    with pytest.raises(LockHeld, match="/rel-4"):
        _holder_alive.acquire()


# --- expiry the client-go way (issue 11 item 7) --------------------------------------------

class SkewedClock(Clock):
    """A machine whose wall clock is `skew` s off (its monotonic clock is fine)."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.skew)


class DrivenClock(Clock):
    """Monotonic time that moves only when the lease waits (`sleep`), at once."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.t - 1000.0)

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds


FAR = ProcessId("far", 7, "0c0ffee0-0000-4000-8000-000000000000", "pid:[1]", "1")


def test_a_live_holder_whose_clock_is_behind_is_never_taken_over(client) -> None:
    # Its renewTime, read by our clock, is ten minutes old on every renewal.
    behind = ClusterLease(client("a"), "a", NAMESPACE, "user-service", "bob@far:7/rel-1",
                          duration=3, clock=SkewedClock(-600), process=FAR)
    holder = ReleaseLock([behind])
    holder.acquire()
    try:
        contender = lease_of(client, "a", "user-service", "rel-2", "alice")
        began = time.monotonic()
        with pytest.raises(LockHeld, match="bob@far:7/rel-1"):
            contender.acquire()      # watches the lease, sees it renewed
        assert time.monotonic() - began < 3 + 2
        assert behind.read()["spec"]["holderIdentity"] == "bob@far:7/rel-1"
    finally:
        holder.release()
    assert holder.lost == {}


@pytest.mark.parametrize("skew", [-600.0, 3600.0], ids=["clock-behind", "clock-ahead"])
def test_a_dead_holder_is_taken_over_after_one_duration_observed_here(client, skew) -> None:
    ClusterLease(client("a"), "a", NAMESPACE, "user-service", "bob@far:7/rel-1",
                 duration=30, clock=SkewedClock(skew), process=FAR).acquire()
    # ...and that console is gone; nobody renews. Whatever its clock said, the lease is
    # taken once it has not changed for its 30 s as this machine counts them.
    clock = DrivenClock()
    taker = ClusterLease(client("a"), "a", NAMESPACE, "user-service",
                         holder_identity("rel-2", "alice"), clock=clock)
    taker.acquire()
    assert 30 <= clock.slept < 30 + 5 + 0.5, clock.slept
    spec = taker.read()["spec"]
    assert spec["holderIdentity"] == taker.identity and spec["leaseTransitions"] == 1


def test_slow_clusters_cost_neither_their_leases_nor_the_others_renewals(fleet, client) -> None:
    """Renewals run in parallel, each bounded by its round: a cluster slower than the round
    delays nobody, and its failing renewals are retried, never counted as a loss."""
    lost: list = []
    lock = ReleaseLock.for_clusters({c: (client(c), NAMESPACE) for c in ("a", "b", "c")},
                                    "user-service", "rel-1", user="alice", duration=3,
                                    timeout=10, on_lost=lambda *args: lost.append(args))
    lock.acquire()
    fleet.set_faults("c", latency=2.5)     # slower than a renewal may take (1.5 s)
    try:
        renewed: list[float] = []          # when a's renewTime changed, as we watched it
        last = None
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            spec = fleet.get("a", "coordination.k8s.io/leases", NAMESPACE,
                             "release-console-user-service")["spec"]
            # Renewals only (a held lease's renewTime moving), as the lease's own
            # duration says how long a watcher waits before it takes a lease over.
            if spec.get("holderIdentity") and spec["renewTime"] != last:
                renewed.append(time.monotonic())
                last = spec["renewTime"]
                duration = float(spec["leaseDurationSeconds"])
            threading.Event().wait(0.05)
        gaps = [b - a for a, b in zip(renewed, renewed[1:])]
        # a stays fresh for everyone else, judged against its own 3 s duration (the bound
        # correctness needs; a fixed 2 s figure failed at load 56 in test_release_lock):
        # no gap reaches it, and the typical gap is well before it (renewed every 1.5 s).
        # Held back by c (1.5 s plus its 2.5 s latency per round), a's gaps pass both.
        assert len(gaps) >= 3 and duration == 3, (gaps, duration)
        assert max(gaps) < duration, gaps
        assert statistics.median(gaps) < 0.8 * duration, gaps
        assert "c" in lock.failing and lock.lost == {} and lost == []
    finally:
        fleet.set_faults("c", latency=0.0)
    wait_for(lambda: "c" not in lock.failing, "c's renewals to get through again", timeout=30)
    assert lock.release() == [] and lock.lost == {}


def test_a_lease_is_given_back_without_reading_it_first(fleet, client) -> None:
    """Read and take it; give it back over the version last written, without a read
    (a release to a fleet pays these per cluster)."""
    def calls() -> dict[str, int]:
        by = fleet.counters("b")["by_verb_resource"]
        return {k: v for k, v in by.items() if k.endswith(" leases")}

    before = calls()
    lease = lease_of(client, "b", "cheap", "rel-1", "alice")
    lease.acquire()
    assert lease.renew()
    lease.release()
    after = calls()
    spent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert spent == {"get leases": 1, "create leases": 1, "update leases": 2}
    assert lease_of(client, "b", "cheap", "x", "y").holder() is None


def test_a_failed_renewal_is_tried_again_soon_not_a_round_later(fleet, client) -> None:
    """The renewer's heap (`ReleaseLock._renew_loop`): a renewal that failed (the cluster
    answers 500 to everything, a seeded fault) is tried again after a tenth of the
    duration - again and again while it fails, never counted as a loss - and once the
    cluster answers, the lease is renewed within that retry, not a whole round (half the
    duration) later."""
    lost: list = []
    lock = ReleaseLock.for_clusters({"a": (client("a"), NAMESPACE)}, "user-service", "rel-1",
                                    user="alice", duration=10, timeout=2,
                                    on_lost=lambda *args: lost.append(args))

    def renew_time() -> str:
        return fleet.get("a", "coordination.k8s.io/leases", NAMESPACE,
                         "release-console-user-service")["spec"]["renewTime"]

    lock.acquire()
    try:
        taken = renew_time()
        fleet.set_faults("a", error_rate=1.0, error_codes=[500])
        # The first round (5 s after taking it) fails...
        wait_for(lambda: "a" in lock.failing, "a renewal to fail", timeout=30)
        failed_at = time.monotonic()
        errors = fleet.counters("a")["injected_errors"]
        # ...and is tried again about a second later, well before the next round.
        wait_for(lambda: fleet.counters("a")["injected_errors"] > errors,
                 "the failed renewal to be tried again", timeout=30)
        assert time.monotonic() - failed_at < 4.0, "tried again only a round later"
        assert lock.lost == {} and lost == []
    finally:
        fleet.set_faults("a", error_rate=0.0)
    answered = time.monotonic()
    wait_for(lambda: "a" not in lock.failing, "the renewal to get through", timeout=30)
    assert time.monotonic() - answered < 4.0, "renewed only a round after the cluster answered"
    assert renew_time() != taken
    assert lock.release() == [] and lock.lost == {} and lost == []
