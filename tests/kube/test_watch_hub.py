"""The watch hub: one thread reads every open watch stream of the process, through the
real client against the simulator; the chunked decoder on any split of the bytes."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console.kube.client import KubeClient, new_api_client
from console.kube.watch_hub import ChunkedLines, HubWatch, StreamEnded, hub
from console.kube.watch_feed import RELISTED

CONFIGMAPS = "/api/v1/namespaces/shop/configmaps"


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """`body` as HTTP/1.1 chunks of the given sizes (cycled), then the last chunk."""
    out, pos, i = bytearray(), 0, 0
    while pos < len(body):
        size = max(1, sizes[i % len(sizes)])
        part = body[pos:pos + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
        pos += size
        i += 1
    return bytes(out + b"0\r\n\r\n")


@given(events=st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=3),
                       min_size=1, max_size=6),
       sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
       cuts=st.lists(st.integers(1, 50), min_size=1, max_size=8))
def test_chunked_lines_come_out_whole_however_the_bytes_are_cut(events, sizes, cuts):
    body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    wire = chunked(body, sizes)
    decoder, lines, pos, i = ChunkedLines(), [], 0, 0
    with pytest.raises(StreamEnded) as ended:
        while True:
            piece = wire[pos:pos + cuts[i % len(cuts)]]
            pos += len(piece)
            i += 1
            lines += decoder.feed(piece)
            assert piece, "the last chunk never came"
    lines += ended.value.args[0]
    assert [json.loads(line) for line in lines] == events


def test_a_malformed_chunk_header_is_an_error():
    with pytest.raises(ValueError):
        ChunkedLines().feed(b"zz\r\n{}\n\r\n")


def client_of(fleet, cid: str) -> KubeClient:
    return KubeClient(cid, new_api_client(cid, fleet.kubeconfig(cid)))


@pytest.fixture
def shop(sim_fleet):
    fleet = sim_fleet(["a"], readiness_delay=0.2, jitter=0)
    client = client_of(fleet, "a")
    client.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "shop"}},
                   retry=False)
    yield fleet, client
    client.close()


def take(events: queue.Queue, want: Any, timeout: float = 10.0) -> list[tuple]:
    """Events from the queue until one for which `want(event)` holds (all of them)."""
    seen: list[tuple] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; saw {[(s, k) for s, k, _ in seen]}"
        try:
            item = events.get(timeout=left)
        except queue.Empty:
            continue
        seen.append(item)
        if want(item):
            return seen


def create(client: KubeClient, name: str) -> None:
    client.request("POST", CONFIGMAPS, body={"metadata": {"name": name}, "data": {"k": name}},
                   retry=False)


def open_sockets() -> int:
    import os
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
               for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))


def test_many_watches_are_read_by_one_thread(shop):
    fleet, client = shop
    client.request("GET", CONFIGMAPS)   # the kept-alive connection and the hub's wake-up
    hub()                               # pair are made before the sockets are counted
    sockets = open_sockets()
    before = threading.active_count()
    outs = [queue.Queue() for _ in range(12)]
    watches = [HubWatch(client, CONFIGMAPS, {}, f"w{i}", out, None, 30)
               for i, out in enumerate(outs)]
    try:
        for watch in watches:
            watch.open()        # lists (nothing yet), then opens the stream
            assert watch.due is None
        create(client, "one")
        for out in outs:
            seen = take(out, lambda e: e[1] == "ADDED")
            assert seen[0][1] == RELISTED and seen[-1][2]["metadata"]["name"] == "one"
        # At most the hub itself was added, whatever the number of watches.
        assert threading.active_count() <= before + 1
        assert any(t.name == "watch-hub" for t in threading.enumerate())
    finally:
        for watch in watches:
            watch.stop()
    # Every stream's connection is closed once stopped (on the hub's thread, soon).
    deadline = time.monotonic() + 10
    while open_sockets() > sockets:
        assert time.monotonic() < deadline, f"{open_sockets() - sockets} sockets left open"
        time.sleep(0.05)


def test_a_stream_the_server_ends_is_opened_again_from_its_last_version(shop):
    fleet, client = shop
    out: queue.Queue = queue.Queue()
    create(client, "before")
    listed = client.request("GET", CONFIGMAPS)
    watch = HubWatch(client, CONFIGMAPS, {}, "cm", out, listed["metadata"]["resourceVersion"],
                     server_timeout=1)
    try:
        watch.open()
        # The server ends the stream after its timeoutSeconds (1 s): the owner is woken
        # and the watch is due to be opened again, from the version it saw last.
        take(out, lambda e: e[0] == "ended")
        assert watch.due is not None and watch.due <= time.monotonic()
        lists = fleet.counters("a")["by_verb_resource"].get("list configmaps", 0)
        watch.open()
        create(client, "after")
        seen = take(out, lambda e: e[1] == "ADDED")
        assert [e[2]["metadata"]["name"] for e in seen if e[1] == "ADDED"] == ["after"]
        assert all(e[1] != RELISTED for e in seen)
        assert fleet.counters("a")["by_verb_resource"].get("list configmaps", 0) == lists
    finally:
        watch.stop()


def test_a_killed_cluster_is_an_error_then_recovered_when_it_answers_again(shop):
    fleet, client = shop
    out: queue.Queue = queue.Queue()
    watch = HubWatch(client, CONFIGMAPS, {}, "cm", out, None, 30)
    try:
        watch.open()
        take(out, lambda e: e[1] == RELISTED)
        fleet.kill("a")
        seen = take(out, lambda e: e[0] == "error")
        assert seen[-1][2].unreachable
        first_retry = watch.due
        assert first_retry is not None
        fleet.revive("a")
        # Opened again by its owner when due (here, this test's thread).
        deadline = time.monotonic() + 20
        while not any(e[0] == "recovered" for e in seen):
            assert time.monotonic() < deadline, f"never recovered; saw {seen}"
            due = watch.due
            if due is not None and due <= time.monotonic():
                watch.open()
            try:
                seen.append(out.get(timeout=0.1))
            except queue.Empty:
                pass
        create(client, "back")
        take(out, lambda e: e[1] == "ADDED" and e[2]["metadata"]["name"] == "back")
    finally:
        watch.stop()
