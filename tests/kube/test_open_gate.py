"""Watch opens go a few at a time in the process (a thousand rollouts opening two
thousand watches at once fought for the GIL), and an open that hangs stops holding the
others back after `STALL` s - through the real client against the simulator."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from console.kube.client import KubeClient, new_api_client
from console.kube.open_gate import SLOTS, OpenGate
from console.kube.watch_hub import HubWatch

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


class CountingClient(KubeClient):
    """The real client; counts its watch opens in flight (at most, over its life)."""

    in_flight = 0
    most = 0
    lock = threading.Lock()

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        cls = CountingClient
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        try:
            return super().watch(*args, **kwargs)
        finally:
            with cls.lock:
                cls.in_flight -= 1


def test_rollouts_open_their_watches_a_few_at_a_time(sim_fleet):
    """Twelve owners open their watches at once on clusters that answer in 0.3 s: at most
    SLOTS opens are in flight, and every watch opens and delivers."""
    ids = [f"c{i}" for i in range(12)]
    fleet = sim_fleet(ids, readiness_delay=0.2, jitter=0)
    for cid in ids:
        fleet.set_faults(cid, latency=[0.3, 0.3])
    clients = [CountingClient(cid, new_api_client(cid, fleet.kubeconfig(cid))) for cid in ids]
    outs = [queue.Queue() for _ in ids]
    watches = [HubWatch(client, CONFIGMAPS, {}, "cm", out, None, 30)
               for client, out in zip(clients, outs)]
    start = threading.Barrier(len(watches))

    def owner(watch: HubWatch) -> None:
        start.wait()
        watch.open()

    threads = [threading.Thread(target=owner, args=(w,)) for w in watches]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert all(w.due is None for w in watches), "a watch did not open"
        assert 1 <= CountingClient.most <= SLOTS, CountingClient.most
        for out in outs:      # each listed (empty) before it watched
            assert out.get(timeout=10)[1] == "RELISTED"
    finally:
        for watch in watches:
            watch.stop()
        for client in clients:
            client.close()


def test_an_open_that_hangs_stops_holding_the_others_back():
    """Every slot taken by opens that never end: a new open goes ahead once they are
    `stall` s old, not when they end."""
    gate = OpenGate(slots=2, stall=0.3)
    hang = threading.Event()
    holding = threading.Barrier(3)

    def hanging() -> None:
        with gate.slot():
            holding.wait()
            hang.wait(30)

    hangers = [threading.Thread(target=hanging) for _ in range(2)]
    for thread in hangers:
        thread.start()
    holding.wait()
    began = time.monotonic()
    through = threading.Event()

    def late() -> None:
        with gate.slot():
            through.set()

    threading.Thread(target=late, daemon=True).start()
    try:
        assert through.wait(10), "the open waited for the hanging ones to end"
        assert time.monotonic() - began >= 0.25      # it did wait its turn first
    finally:
        hang.set()
        for thread in hangers:
            thread.join()
