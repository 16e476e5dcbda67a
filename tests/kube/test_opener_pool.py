"""The watch-opener pool: `size` opens at once, one more thread for each open older than
`stall` (so nothing waits long behind opens that hang), back to `size` threads after."""

from __future__ import annotations

import threading
import time

from console.kube.opener_pool import OpenerPool
from tests.waiting import wait_for


def test_an_open_waits_for_a_thread_only_until_the_busy_ones_stall():
    pool = OpenerPool(2, stall=0.3, name="test-open")
    release = threading.Event()
    started = threading.Semaphore(0)

    def hang() -> None:
        started.release()
        release.wait(30)

    try:
        for _ in range(2):
            pool.submit(hang)
        assert started.acquire(timeout=10) and started.acquire(timeout=10)
        began = time.monotonic()
        ran = threading.Event()
        pool.submit(ran.set)
        assert ran.wait(10), "the open waited for the hanging ones to end"
        assert time.monotonic() - began >= 0.25        # it waited its turn first
        errors = threading.Event()
        pool.submit(lambda: 1 / 0)                     # a bug in one call: logged
        pool.submit(errors.set)
        assert errors.wait(10), "a call that raised took its thread with it"
    finally:
        release.set()
    # The extra threads end once they find nothing to do.
    wait_for(lambda: pool.threads() <= 2, "the pool to shrink back to its size", 10)
