"""Following rollouts without a thread each: `Following` is one rollout's state, and
`RolloutLoop` the process's one thread that decides every rollout.

A rollout is decided from its watches' events (the Deployment, its pods), from its
cancel event and from time passing (a pod problem outliving its grace, an unreachable
spell its own, the deadline). A thread per rollout waking for each burst of events
made a thousand threads contend for the interpreter lock: the wake-ups cost more CPU
than the decisions. Here the hub (`console.kube.watch_hub`) and the cancel wakers post
each rollout's events on one queue; the loop takes everything queued, steps each
rollout that got something or whose next due time came, and sleeps until the next due
time. The caller of `ClusterDriver.follow` only waits for the verdict - at most `LATE`
past the rollout's deadline, so a loop held up cannot hold its callers for ever.

Opening a watch blocks (a list, a TLS connect): the loop hands it to a small pool of
opener threads (`OPENERS`, `console.kube.opener_pool`) that grows past its size for opens
that hang, each open still one of a few in flight in the process (`console.kube.open_gate`).
A bug in deciding one rollout fails that rollout (logged), never the loop's thread.

The deadline holds the cluster to it, not this console: what the watches told so far
may be late (a console starved of CPU opens its watches and reads their events late -
a thousand rollouts beside busy processes failed "not complete after 300s" still
"waiting for deployment spec update to be observed", rolled out long before). At its
deadline a rollout not seen complete is read once more (`LOOKS`, threads of their own;
a read bounded well inside `LATE`: `LOOK_TIMEOUT`, `LOOK_ATTEMPTS`): complete, it ends
complete (verified as any other); not, or the read fails, it fails - a read not answered
saying the cluster did not answer it.
A rollout seen complete is never failed by its deadline: its pods' settling ends it
within `POD_SETTLE`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import queue
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from console.kube.client import RETRY_STATUSES, ClusterError
from console.kube.deployment import Progress, _template_images, selector_string
from console.kube.opener_pool import OpenerPool
from console.kube.rollout import FailFast, Phase, RolloutStatus, pod_summary, rollout_status, \
    verify_pods
from console.kube.waking import take_batch
from console.kube.watch_feed import RELISTED
from console.kube.watch_hub import HubWatch

if TYPE_CHECKING:
    from console.kube.driver import ClusterDriver

log = logging.getLogger(__name__)

# s the pod watch may lag the Deployment's at a rollout's completion before verify()
# lists the pods instead.
POD_SETTLE = 2.0
# s between looks at a plain cancel event (a `WakingEvent` wakes the rollout itself, which
# then only looks this often as a safety net).
CANCEL_POLL = 0.5
WOKEN_POLL = 5.0
# Threads that open watches for the loop: a few opens run at once (`open_gate`); the
# rest of the pool is room for opens that hang on a silent cluster, and an open that
# hangs past `open_gate.STALL` gets a thread of its own beyond these.
OPENER_THREADS = 32
# Threads that read a Deployment at its rollout's deadline (grown past this for reads
# that hang, as the openers are; never queued behind the opens).
LOOK_THREADS = 8
# s past a rollout's own deadline the caller waits for the loop's verdict at most: the
# loop decides a rollout at its deadline, so only a loop held up (a blocked `on_progress`,
# a bug) runs past this - the caller then fails that rollout rather than wait for ever.
LATE = 60.0
# The read at the deadline: s a try (connect, then the answer) and tries at most. Bounded
# well inside `LATE` (two tries and a backoff of at most `MAX_RETRY_AFTER`: ~12 s), so a
# cluster that does not answer it fails the rollout as the cluster's fault; with the
# client's usual six tries of 10 s a cluster answering 503 slowly outlasted LATE, and the
# caller blamed this console's rollout thread.
LOOK_TIMEOUT = 5.0
LOOK_ATTEMPTS = 2

Item = tuple[str, str, Any]


class RolloutInterrupted(Exception):
    """Following a rollout was cancelled by the caller (the release was aborted)."""


class _Inbox:
    """What a rollout's watches put their events on: the loop's queue, tagged."""

    __slots__ = ("owner",)

    def __init__(self, owner: Following) -> None:
        self.owner = owner

    def put(self, item: Item) -> None:
        LOOP.post(self.owner, item)


class Following:
    """One rollout (the Deployment as our write stored it) until its verdict.

    `step` runs on the loop's thread only; `wait` on the caller's."""

    def __init__(self, driver: ClusterDriver, deployment: Mapping[str, Any], timeout: float,
                 on_progress: Callable[[Progress], None] | None,
                 cancel: threading.Event | None) -> None:
        self.driver = driver
        self.deployment = deployment
        self.timeout = timeout
        self.on_progress = on_progress
        self.cancel = cancel
        meta = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        self.generation = int(meta.get("generation") or 0)
        self.images = _template_images(spec.get("template") or {})
        labels = (spec.get("selector") or {}).get("matchLabels") or {"app": driver.app}
        inbox = _Inbox(self)
        # The server ends each watch after this long (the hub then has it opened again):
        # bounded so a connection that dies silently is noticed within minutes.
        server_timeout = max(1, min(int(timeout) + 1, 120))
        # Only pods of the new template can fail the rollout. When our write changed the
        # spec (a generation the controller has not seen yet), every such pod is made after
        # it: the pods are watched from the write's resourceVersion, no list needed (a
        # version the server no longer keeps is answered 410 and the watch lists). Else
        # (nothing changed, or already seen) the pods may exist already: list them first.
        observed = int((deployment.get("status") or {}).get("observedGeneration") or 0)
        pods_from = meta.get("resourceVersion") if self.generation > observed else None
        client = driver.client
        self.watches = [
            HubWatch(client, f"/apis/apps/v1/namespaces/{driver.namespace}/deployments",
                     {"fieldSelector": f"metadata.name={driver.app}"}, "deployment",
                     inbox, meta.get("resourceVersion"), server_timeout),
            HubWatch(client, f"/api/v1/namespaces/{driver.namespace}/pods",
                     {"labelSelector": selector_string(labels)}, "pod", inbox,
                     pods_from, server_timeout),
        ]
        self._opening: set[int] = set()         # watches handed to an opener
        self._add_waker = getattr(cancel, "add_waker", None)
        self.poll = WOKEN_POLL if self._add_waker is not None or cancel is None \
            else CANCEL_POLL
        self.fail_fast = FailFast(self.images, driver.grace)
        # The pods as the watch tells them (a re-list starts over): at completion they
        # usually verify the rollout without listing the pods again.
        self.pods: dict[str, Mapping[str, Any]] = {}
        replicas = spec.get("replicas")
        self.wanted = replicas if isinstance(replicas, int) else 1
        self.settle_until: float | None = None
        self.status: RolloutStatus = rollout_status(deployment, self.generation)
        self.deadline = time.monotonic() + timeout
        self.failing_since: dict[str, float] = {}   # watch -> when it started failing
        self.last_error: ClusterError | None = None
        self.reported: Progress | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.timer_due: float | None = None         # the loop's timer for it
        # The Deployment read at the deadline: None not asked, False asked, True read.
        self.looked: bool | None = None
        self.look_error: ClusterError | None = None

    # -- the caller's thread ----------------------------------------------------------

    def wait(self) -> RolloutStatus:
        """Hand the rollout to the loop and wait for its verdict (raises it)."""
        if self._add_waker is not None:
            self._add_waker(self._wake)
        LOOP.post(self, ("begin", "", None))
        if not self.done.wait(max(0.0, self.deadline - time.monotonic()) + LATE):
            raise ClusterError(self.driver.cluster, "no verdict on the rollout "
                               f"{LATE:g}s past its {self.timeout:g}s deadline: the "
                               "process's rollout thread is held up")
        if self.error is not None:
            raise self.error
        return self.status

    def _wake(self) -> None:
        LOOP.post(self, ("cancel", "", None))

    # -- the loop's thread --------------------------------------------------------------

    def step(self, batch: list[Item], now: float) -> float | None:
        """Take `batch`, decide; the next time to step again (None: decided)."""
        try:
            self._take(batch, now)
            return self._decide(now)
        except BaseException as exc:  # noqa: BLE001 - the verdict, or a bug: the caller's
            self._finish(exc)
            return None

    def _take(self, batch: list[Item], now: float) -> None:
        for source, kind, obj in batch:
            if source in ("begin", "cancel", "ended", "opened"):
                if source == "opened":
                    self._opening.discard(kind)     # type: ignore[arg-type]
                continue
            if source == "deadline":
                self.looked = True
                if isinstance(obj, ClusterError):
                    self.look_error = obj
                elif self.status.phase is not Phase.COMPLETE:
                    # A read served before the watch showed the rollout done is older
                    # news: a rollout seen complete stays so.
                    self.status = rollout_status(obj, self.generation)
            elif source == "error":
                self.last_error = obj
                self.failing_since.setdefault(kind, now)
            elif source == "recovered":
                self.failing_since.pop(kind, None)
            elif kind == RELISTED:
                if source == "pod":
                    self.pods.clear()
            elif source == "deployment" and kind != "DELETED":
                status = rollout_status(obj, self.generation)
                # Once read at the deadline, the cluster's word stands: a watch's backlog
                # (opened late, it replays from the apply) is older than the read, and
                # only news of the rollout done may still change the verdict.
                if not self.looked or status.phase is Phase.COMPLETE:
                    self.status = status
            elif source == "deployment":
                raise ClusterError(self.driver.cluster, f"deployment {self.driver.app!r} "
                                   "was deleted during the rollout")
            elif source == "pod":
                self.fail_fast.observe(obj, now, deleted=kind == "DELETED")
                name = (obj.get("metadata") or {}).get("name", "")
                if kind == "DELETED":
                    self.pods.pop(name, None)
                else:
                    self.pods[name] = pod_summary(obj)

    def _decide(self, now: float) -> float | None:
        for index, watch in enumerate(self.watches):
            # (Re)opened by an opener thread: a list or a connect that blocks holds up
            # this cluster only; the hub reads the streams.
            opens_at = watch.due
            if opens_at is not None and opens_at <= now and index not in self._opening:
                self._opening.add(index)
                OPENERS.submit(self._open, index)
        status, fail_fast, cluster = self.status, self.fail_fast, self.driver.cluster
        pending = fail_fast.pending()
        progress = Progress(status.phase.value, status.message, status.desired,
                            status.updated, status.ready, status.available,
                            pending.describe() if pending else None)
        if self.on_progress and progress != self.reported:
            self.reported = progress
            self.on_progress(progress)
        if status.phase is Phase.COMPLETE:
            # The pod watch is another connection and may lag the Deployment's: give it
            # a moment to show the pods ready, else verify() lists them.
            self.settle_until = self.settle_until or now + POD_SETTLE
            if verify_pods(self.pods.values(), self.images, self.wanted) is None:
                self.driver._verified.add(id(self.deployment))
                self._finish(None)
                return None
            # Read at the deadline: no waiting on the watches (their backlog is older
            # than the read); verify() lists the pods.
            if now >= self.settle_until or self.looked:
                self._finish(None)
                return None
        else:
            self.settle_until = None
        if status.phase is Phase.FAILED:
            raise ClusterError(cluster, status.message)
        problem = fail_fast.verdict(now)
        if problem is not None:
            raise ClusterError(cluster, f"pods failing for over {self.driver.grace:g}s: "
                               f"{problem.describe()}")
        if self.cancel is not None and self.cancel.is_set():
            raise RolloutInterrupted(cluster)
        failing = self.failing_since
        grace = self.driver.unreachable_grace
        if failing and self.last_error is not None and now - min(failing.values()) > grace:
            raise ClusterError(cluster, f"{self.last_error.reason} (for over {grace:g}s "
                               "during the rollout)", unreachable=self.last_error.unreachable)
        if now >= self.deadline and status.phase is not Phase.COMPLETE:
            # On the cluster's word, read now: the events so far may be late (see the
            # module docstring). The read posts its answer, which steps this again.
            if self.looked is None:
                self.looked = False
                LOOKS.submit(self._look)
            elif self.looked:
                unread = f" ({_unread(self.look_error)} at the deadline: " \
                    f"{self.look_error.reason})" if self.look_error is not None else ""
                raise ClusterError(cluster, f"rollout not complete after {self.timeout:g}s: "
                                   f"{status.message}{unread}",
                                   unreachable=bool(self.look_error and
                                                    self.look_error.unreachable))
        # Step again at the next thing that may need deciding (events step it sooner):
        # a pod problem outliving its grace, an unreachable spell its grace, the deadline
        # (past it, the deadline's read steps it).
        due = now + self.poll
        if self.deadline > now:
            due = min(due, self.deadline)
        if self.settle_until is not None:
            due = min(due, self.settle_until)
        if (verdict_at := fail_fast.due()) is not None:
            due = min(due, verdict_at)
        if failing:
            due = min(due, min(failing.values()) + grace)
        for index, watch in enumerate(self.watches):
            if index not in self._opening and (at := watch.due) is not None:
                due = min(due, at)
        return due

    def _finish(self, error: BaseException | None) -> None:
        try:
            if self._add_waker is not None:
                self.cancel.remove_waker(self._wake)   # type: ignore[union-attr]
            for watch in self.watches:
                watch.stop()
        except Exception as exc:  # noqa: BLE001 - a bug in ending it: still give a verdict
            log.exception("ending the rollout on %s failed", self.driver.cluster)
            # State we cannot vouch for: fail the rollout rather than call it done.
            error = error if error is not None else exc
            for watch in self.watches:
                try:
                    watch.stop()
                except Exception:  # noqa: BLE001 - logged above; end the rest
                    pass
        self.error = error
        self.done.set()

    # -- a look's thread ------------------------------------------------------------------

    def _look(self) -> None:
        """The Deployment read at the deadline, posted as ("deadline", "", it or the
        ClusterError)."""
        answer: Any
        try:
            answer = self.driver.read_deployment(timeout=LOOK_TIMEOUT,
                                                 attempts=LOOK_ATTEMPTS)
            if answer is None:
                answer = ClusterError(self.driver.cluster, f"deployment {self.driver.app!r} "
                                      "was deleted during the rollout")
        except ClusterError as exc:
            answer = exc
        except Exception as exc:  # noqa: BLE001 - any failure to read: the verdict says so
            answer = ClusterError(self.driver.cluster, f"unexpected error: {exc}")
        LOOP.post(self, ("deadline", "", answer))

    # -- an opener's thread ---------------------------------------------------------------

    def _open(self, index: int) -> None:
        try:
            if not self.done.is_set():
                self.watches[index].open()      # never raises; failures go to the inbox
        finally:
            LOOP.post(self, ("opened", index, None))   # type: ignore[arg-type]


def _unread(error: ClusterError) -> str:
    """What the deadline's failed read says of the cluster: it did not answer (unreachable,
    timed out, 429/5xx), or it answered that the Deployment cannot be read."""
    if error.unreachable or error.status in RETRY_STATUSES:
        return "the cluster did not answer the read"
    return "the Deployment could not be read"


class RolloutLoop:
    """The thread that steps every rollout being followed (started on first use)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Following, Item]] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Following]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def post(self, following: Following, item: Item) -> None:
        """Give `following` something to take (from any thread)."""
        self._queue.put((following, item))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="rollouts",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        timers = self._timers
        while True:
            wait = max(0.0, timers[0][0] - time.monotonic()) if timers else None
            batch = take_batch(self._queue, wait)
            now = time.monotonic()
            todo: dict[Following, list[Item]] = {}
            for following, item in batch:
                todo.setdefault(following, []).append(item)
            while timers and timers[0][0] <= now:
                due, _seq, following = heapq.heappop(timers)
                if following.timer_due == due:
                    following.timer_due = None
                    todo.setdefault(following, [])
            for following, items in todo.items():
                if following.done.is_set():
                    continue
                try:
                    due = following.step(items, now)
                except Exception as exc:  # noqa: BLE001 - one rollout's bug, not everyone's
                    # `step` fails its rollout on any error of deciding; this is a bug in
                    # that (say in ending it): fail that rollout, keep serving the others.
                    log.exception("deciding the rollout on %s failed unexpectedly",
                                  following.driver.cluster)
                    if not following.done.is_set():
                        following.error = exc
                        following.done.set()
                    continue
                if due is not None and due != following.timer_due:
                    following.timer_due = due
                    heapq.heappush(timers, (due, next(self._seq), following))


# The process's loop, the threads that open watches for it and those that read a
# Deployment at its rollout's deadline.
LOOP = RolloutLoop()
OPENERS = OpenerPool(OPENER_THREADS)
LOOKS = OpenerPool(LOOK_THREADS, name="deadline-look")
