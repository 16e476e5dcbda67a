"""The cluster driver on one simulated cluster, through the real client: watches that
resume after 410, error mapping without secrets, bounded retries on a flaky cluster."""

from __future__ import annotations

import ssl

import pytest
from kubernetes import config as k8s_config

from console.engine import ReleaseRequest
from console.events import Kind
from console.kube.client import (MAX_ATTEMPTS, ClusterError, KubeClient, _expiring_credentials,
                                 _Throttled, new_api_client)
from console.kube.driver import ClusterDriver, image_tag
from console.kube.rollout import Phase


def driver_for(fleet, cid, token=None, grace=0.5):
    client = KubeClient(cid, new_api_client(cid, fleet.kubeconfig(cid, token)))
    return ClusterDriver(client, "user-service", cid, grace=grace)


def test_image_tag():
    assert image_tag("reg:5000/apps/user-service:v1.2") == "v1.2"
    assert image_tag("reg:5000/apps/user-service") is None
    assert image_tag("app:v1@sha256:abc") == "v1"
    assert image_tag(None) is None


def test_follow_relists_after_410_gone(world):
    w = world(["a"])
    w.deploy_everywhere("v1")
    driver = driver_for(w.fleet, "a")
    from console.render import render
    applied = driver.apply(render(w.config, "a", "v2"), {})
    lists_before = w.fleet.counters("a")["by_verb_resource"].get("list deployments", 0)
    # A resourceVersion older than the server's backlog: the watch answers 410 Gone.
    stale = {**applied, "metadata": {**applied["metadata"], "resourceVersion": "1"}}
    status = driver.follow(stale, timeout=10)
    assert status.phase is Phase.COMPLETE
    assert w.ready_pods("a", "v2") == 2
    counters = w.fleet.counters("a")["by_verb_resource"]
    assert counters.get("list deployments", 0) == lists_before + 1
    driver.client.close()


def test_following_a_rollout_starts_no_thread_per_watch(world):
    """The rollout's two watches are read by the process's one watch hub: following it
    adds no thread of its own (a thousand rollouts were three thousand threads)."""
    import threading

    w = world(["a"], readiness_delay=0.5, jitter=0.0)
    w.deploy_everywhere("v1")
    driver = driver_for(w.fleet, "a")
    from console.render import render
    applied = driver.apply(render(w.config, "a", "v2"), {})
    threads: list[set[str]] = []

    def on_progress(progress):
        threads.append({t.name for t in threading.enumerate()})

    status = driver.follow(applied, timeout=30, on_progress=on_progress)
    assert status.phase is Phase.COMPLETE and len(threads) >= 2
    names = set().union(*threads)
    assert not [n for n in names if n.startswith("watch-a-")], names
    assert "watch-hub" in names
    driver.client.close()


def test_rollouts_followed_at_once_are_decided_on_one_thread_not_each_on_its_own(world):
    """Three rollouts followed at once (a thread each waiting for its verdict, as a
    wave's workers do) are decided on the process's one rollout thread: their progress
    is told there, not on the three waiting threads (a thousand deciding threads spent
    more CPU waking for events than deciding)."""
    import threading

    ids = ["a", "b", "c"]
    w = world(ids, readiness_delay=0.5, jitter=0.0)
    w.deploy_everywhere("v1")
    from console.render import render
    deciders: dict[str, set[str]] = {cid: set() for cid in ids}
    statuses: dict[str, Phase] = {}

    def one(cid: str) -> None:
        driver = driver_for(w.fleet, cid)
        try:
            applied = driver.apply(render(w.config, cid, "v2"), {})
            status = driver.follow(applied, timeout=60, on_progress=lambda p: deciders[
                cid].add(threading.current_thread().name))
            driver.verify(applied)
            statuses[cid] = status.phase
        finally:
            driver.client.close()

    threads = [threading.Thread(target=one, args=(cid,), name=f"wave-{cid}") for cid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == {cid: Phase.COMPLETE for cid in ids}
    assert all(deciders.values()), deciders
    assert set().union(*deciders.values()) == {"rollouts"}, deciders


def test_wrong_token_is_a_clear_401_without_the_token(world):
    w = world(["a", "b"])
    foreign = w.fleet.admin_token("b")
    driver = driver_for(w.fleet, "a", token=foreign)
    with pytest.raises(ClusterError) as info:
        driver.live()
    assert info.value.status == 401 and info.value.cluster == "a"
    assert "unauthorized" in str(info.value) and foreign not in str(info.value)
    driver.client.close()


def test_forbidden_is_reported_with_the_servers_reason(world):
    w = world(["a"])
    token = w.fleet.add_token("a", [{"verbs": ["get", "list", "watch"], "resources": ["*"],
                                     "apiGroups": ["*"]}])
    driver = driver_for(w.fleet, "a", token=token)
    assert driver.live().exists is False
    with pytest.raises(ClusterError) as info:
        driver.apply([{"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "user-service"}, "spec": {}}], {})
    assert info.value.status == 403 and "API error 403" in info.value.reason
    assert token not in str(info.value)
    driver.client.close()


def test_closed_port_is_unreachable_connection_refused(world):
    w = world(["a"])
    driver = driver_for(w.fleet, "a")
    w.fleet.kill("a")
    with pytest.raises(ClusterError) as info:
        driver.client.request("GET", "/version", timeout=2)
    assert info.value.unreachable and "connection refused" in info.value.reason
    driver.client.close()


def test_flaky_cluster_still_releases_with_bounded_retries(world):
    w = world(["a"], seed=1088)
    w.deploy_everywhere("v1")
    engine = w.engine()
    marks = {}

    def flaky_after_preflight(event):
        if event.kind is Kind.RELEASE_STARTED:
            marks["before"] = w.fleet.counters("a")
            w.fleet.set_faults("a", error_rate=0.3, error_codes=[500, 429], retry_after=1)
        elif event.kind is Kind.RELEASE_FINISHED and "before" in marks:
            marks["after"] = w.fleet.counters("a")

    engine.add_listener(flaky_after_preflight)
    result = engine.run(ReleaseRequest(tag="v2"), w.approve)
    assert result.exit_code == 0, result.clusters
    assert w.version("a") == "v2"
    sent = marks["after"]["total"] - marks["before"]["total"]
    # 5 requests when nothing fails; each is tried at most MAX_ATTEMPTS times: no storm.
    assert sent <= 5 * MAX_ATTEMPTS
    engine.close()


def test_rollout_reads_the_pods_at_most_once(world):
    """A write that changes the template: its pods are watched from the write's
    resourceVersion (all of them are made after it) and what the watch saw verifies the
    end state, no list at all; a write that changes nothing lists them first (they may
    exist already), and that list plus the watch verifies it."""
    w = world(["a"])
    w.deploy_everywhere("v1")
    driver = driver_for(w.fleet, "a")
    from console.render import render

    def pod_lists() -> int:
        return w.fleet.counters("a")["by_verb_resource"].get("list pods", 0)

    for tag, lists in (("v2", 0), ("v2", 1)):
        before = pod_lists()
        applied = driver.apply(render(w.config, "a", tag), {})
        assert driver.follow(applied, timeout=30).phase is Phase.COMPLETE
        driver.verify(applied)
        assert pod_lists() - before == lists, tag
    assert w.ready_pods("a", "v2") == 2
    driver.client.close()


def test_a_cluster_release_sends_three_requests(world):
    """Between RELEASE_STARTED and RELEASE_FINISHED, an upgrade costs one apply and two
    watches (besides its lease): no namespace read (the Deployment lives in it), no read
    of the Deployment (pre-flight's stands: the apply's precondition), no pods list
    (the pod watch saw them ready)."""
    w = world(["a"])
    w.deploy_everywhere("v1")
    engine = w.engine()
    marks = {}

    def mark(event):
        if event.kind in (Kind.RELEASE_STARTED, Kind.RELEASE_FINISHED):
            marks[event.kind] = dict(w.fleet.counters("a")["by_verb_resource"])

    engine.add_listener(mark)
    result = engine.run(ReleaseRequest(tag="v2"), w.approve)
    assert result.exit_code == 0, result.clusters
    before, after = marks[Kind.RELEASE_STARTED], marks[Kind.RELEASE_FINISHED]
    sent = {k: after[k] - before.get(k, 0) for k in after
            if after[k] != before.get(k, 0) and not k.endswith(" leases")}
    assert sent == {"patch deployments": 1, "watch deployments": 1, "watch pods": 1}
    engine.close()


def test_a_static_token_needs_no_refresh_hook_and_still_authenticates(world):
    """The loader's refresh hook re-copies the whole configuration (every proxy variable
    of the environment) before each request, and only ever changes something for
    credentials that expire: a kubeconfig with a plain token gets none, and its requests
    still carry the token (without it the simulator sees an anonymous user)."""
    w = world(["a"])
    kubeconfig = w.fleet.kubeconfig("a")
    assert not _expiring_credentials(kubeconfig, None)
    client = KubeClient("a", new_api_client("a", kubeconfig))
    assert client.api.configuration.refresh_api_key_hook is None
    assert client.request("GET", "/api/v1/namespaces/default/pods")["items"] == []
    client.api.configuration.api_key.pop("BearerToken")
    with pytest.raises(ClusterError) as err:     # the same call without the token
        client.request("GET", "/api/v1/namespaces/default/pods", retry=False)
    assert err.value.status == 403 and "system:anonymous" in err.value.reason
    client.close()


def test_expiring_credentials_are_those_of_an_exec_plugin_or_auth_provider():
    def config(user: dict) -> dict:
        return {"current-context": "x", "contexts": [{"name": "x", "context": {"user": "u"}}],
                "users": [{"name": "u", "user": user}]}
    assert _expiring_credentials(config({"exec": {"command": "get-token"}}), None)
    assert _expiring_credentials(config({"auth-provider": {"name": "oidc"}}), "x")
    assert not _expiring_credentials(config({"token": "t"}), None)
    assert not _expiring_credentials(config({"client-certificate-data": "..."}), None)


def test_the_kubeconfig_token_hook_runs_once_a_second_not_per_request(world):
    """Where a hook is needed (expiring credentials) it runs at most once a second - and
    still runs (an expiring token is refreshed)."""
    w = world(["a"])
    client = KubeClient("a", new_api_client("a", w.fleet.kubeconfig("a")))
    configuration = client.api.configuration
    # The loader's own hook, as it installs it for every token, throttled as for an
    # exec plugin's.
    loader = k8s_config.kube_config.KubeConfigLoader(dict(w.fleet.kubeconfig("a")))
    loader.load_and_set(configuration)
    configuration.refresh_api_key_hook = _Throttled(configuration.refresh_api_key_hook)
    client.request("GET", "/version")
    loaded = configuration.api_key["BearerToken"]
    # An equal token that is another object: whether the hook ran shows in its identity.
    copy = loaded[:1] + loaded[1:]
    configuration.api_key["BearerToken"] = copy
    for _ in range(5):
        client.request("GET", "/version")
    assert configuration.api_key["BearerToken"] is copy      # within the second: not run
    configuration.refresh_api_key_hook.next = 0.0            # as if the second had passed
    client.request("GET", "/version")
    assert configuration.api_key["BearerToken"] is not copy  # run again
    client.close()


def test_watches_ended_early_leave_the_kept_alive_connection_to_requests(world):
    """A watch we end cannot give its connection back; it gets one of its own, so the
    requests after a rollout reuse their kept-alive connection (no new TLS handshake)."""
    w = world(["a"])
    client = KubeClient("a", new_api_client("a", w.fleet.kubeconfig("a")))

    def idle_sockets() -> set:
        # The requests' kept connections (the client's direct ones).
        return {c._conn.sock.getsockname() for c in client._direct.idle()
                if c._conn is not None and c._conn.sock is not None}

    client.request("GET", "/version")
    kept = idle_sockets()
    assert len(kept) == 1
    for _ in range(2):
        stream = client.watch("/api/v1/namespaces/default/pods", {}, 30)
        stream.close()
    client.request("GET", "/version")
    assert idle_sockets() == kept
    client.close()


def test_every_connection_to_a_cluster_shares_one_tls_context(world):
    """The CA is loaded once per cluster, not again for each new connection (urllib3's
    default): requests and watches of one client share one context, which verifies."""
    w = world(["a"])
    client = KubeClient("a", new_api_client("a", w.fleet.kubeconfig("a")))
    client.request("GET", "/version")
    [conn] = [c._conn for c in client._direct.idle() if c._conn is not None]
    stream = client.watch("/api/v1/namespaces/default/pods", {}, 30)
    try:
        watched = stream.response.connection.sock
        assert watched.context is conn.sock.context
        assert conn.sock.context.verify_mode == ssl.CERT_REQUIRED
    finally:
        stream.close()
    client.close()


def test_taking_the_lock_reads_no_namespace_pre_flight_saw_the_deployment_in(world):
    """The lease lives in the app namespace; where pre-flight just read the Deployment,
    the namespace exists: taking the lock reads only the lease (and writes it)."""
    from console.engine.checks import preflight_checks, take_lock

    w = world(["a", "b"])
    w.deploy_everywhere("v1", ["a"])
    engine = w.engine()
    request = ReleaseRequest(tag="v2")
    report = preflight_checks(engine, request, "r-test")
    assert report.live["a"].exists and not report.live["b"].exists
    before = {c: dict(w.fleet.counters(c)["by_verb_resource"]) for c in ("a", "b")}
    lock, report = take_lock(engine, engine.plan(request), "r-test", "tester", report)
    assert lock is not None
    try:
        spent = {}
        for c in ("a", "b"):
            after = w.fleet.counters(c)["by_verb_resource"]
            spent[c] = {k: after[k] - before[c].get(k, 0) for k in after
                        if after[k] != before[c].get(k, 0)}
        assert spent["a"] == {"get leases": 1, "update leases": 1} or \
            spent["a"] == {"get leases": 1, "create leases": 1}
        assert spent["b"].get("get namespaces") == 1     # no Deployment yet: ensured
    finally:
        lock.release()
        engine.close()


def test_a_waking_cancel_ends_a_quiet_rollout_at_once(world):
    """A rollout following a `WakingEvent` does not look at it twice a second (a thousand
    rollouts looking cost seconds of CPU): setting it wakes the rollout, which stops well
    before its next look (WOKEN_POLL)."""
    import threading
    import time

    from console.kube.driver import WOKEN_POLL, RolloutInterrupted
    from console.kube.waking import WakingEvent
    from console.render import render
    w = world(["a"])
    w.deploy_everywhere("v1")
    w.fleet.set_faults("a", readiness_delay=60.0)      # nothing happens for a minute
    driver = driver_for(w.fleet, "a")
    cancel = WakingEvent()
    applied = driver.apply(render(w.config, "a", "v2"), {})
    progress = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    started = time.monotonic()
    with pytest.raises(RolloutInterrupted):
        timer.start()
        driver.follow(applied, timeout=120, on_progress=lambda p: progress.set(),
                      cancel=cancel)
    assert progress.is_set()
    # Set after 1 s; unwoken, the rollout would next look at it after WOKEN_POLL s.
    assert time.monotonic() - started < WOKEN_POLL
    driver.client.close()


def test_a_waking_event_calls_its_wakers_when_set_and_when_added_after():
    from console.kube.waking import WakingEvent
    calls: list[str] = []
    event = WakingEvent()
    event.add_waker(lambda: calls.append("first"))
    event.set()
    event.add_waker(lambda: calls.append("late"))
    assert calls == ["first", "late"] and event.is_set()


def slow_apply_world(world):
    """Clusters a and slow on v1; `generation()` is slow's Deployment generation as the
    simulator stores it (read in-process: not through slow's latency)."""
    w = world(["a", "slow"], readiness_delay=0.3, jitter=0.0)
    w.deploy_everywhere("v1")

    def generation() -> int:
        return w.fleet.get("slow", "apps/deployments", "slow", "user-service")["metadata"][
            "generation"]
    return w, generation


def test_a_rollout_opens_its_watches_after_the_applies_in_flight(world):
    """In a parallel wave the applies go first: a cluster that applied at once waits to
    open its watches while another cluster's apply is still on its way (the release's
    wall time waits for the last apply); it then follows its rollout from its apply's
    version, missing nothing."""
    w, generation = slow_apply_world(world)
    engine = w.engine()
    before = generation()
    # slow's Deployment generation as stored when a's rollout first tells its progress:
    # a's first progress comes from its watches' loop, so by then slow's apply must be
    # stored. Read on a's own rollout thread at that moment (listeners are called there):
    # an order of events, not two clocks compared - a poller timing slow's apply lagged
    # up to 0.1 s behind under load (the test's flake), while without the wait a's first
    # progress comes ~1.5 s before slow's apply lands.
    seen_at_a_progress: list[int] = []

    def listener(event):
        if event.kind is Kind.RELEASE_STARTED:
            w.fleet.set_faults("slow", latency=1.5)      # its apply takes 1.5 s
        if event.kind is Kind.CLUSTER_PROGRESS and event.cluster == "a" \
                and not seen_at_a_progress:
            seen_at_a_progress.append(generation())

    engine.add_listener(listener)
    try:
        result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    finally:
        w.fleet.set_faults("slow", latency=0.0)
    assert [c.outcome for c in result.clusters] == ["healthy", "healthy"]
    assert generation() > before, "the slow cluster's apply was never stored"
    assert seen_at_a_progress and seen_at_a_progress[0] > before, \
        "a opened its watches while slow's apply was still on its way"


def test_a_cluster_handed_out_counts_as_an_apply_to_come_before_its_thread_applies(world):
    """The wave hands its clusters out at once, but a cluster's thread may reach its
    apply late (a busy machine: its start told, its manifests rendered, the others
    already applied). Until it has applied, the process is not quiet: a rollout that
    applied meanwhile must not open its watches ahead of it. Forced here: slow's thread
    is held in its own start (a listener on its thread) until a's apply is stored, then
    asks whether the process goes quiet. Before, the count of writes in flight dropped
    to none once a's write ended, and a opened its watches at once."""
    from console.kube.writes_first import WRITES
    from tests.integration.conftest import wait_for

    w, _slow_generation = slow_apply_world(world)
    engine = w.engine()

    def a_generation() -> int:
        return w.fleet.get("a", "apps/deployments", "a", "user-service")["metadata"][
            "generation"]
    a_before = a_generation()
    quiet_while_slow_held: list[bool] = []

    def listener(event):
        if event.kind is Kind.CLUSTER_STARTED and event.cluster == "slow":
            wait_for(lambda: a_generation() > a_before, timeout=120, what="a's apply")
            # a's write ends right after its answer: the process would be quiet within
            # a moment but for slow, handed out and not yet applied. Never quiet with
            # the count of what is to come (the full second passes); quiet in
            # milliseconds without it.
            quiet_while_slow_held.append(WRITES.wait_quiet(limit=1.0))

    engine.add_listener(listener)
    result = engine.run(ReleaseRequest(tag="v2", strategy="parallel"), w.approve)
    assert [c.outcome for c in result.clusters] == ["healthy", "healthy"]
    assert quiet_while_slow_held == [False], "quiet while slow was still to apply"
