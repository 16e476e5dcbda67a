"""`SimFleet`: many simulated clusters (and a demo registry) served by one background loop.

    with SimFleet(["staging", "prod"], readiness_delay=0.2) as fleet:
        kubeconfig = fleet.kubeconfig("staging")      # dict for new_client_from_config_dict
        fleet.set_faults("prod", error_rate=0.2)
        fleet.kill("prod"); fleet.revive("prod")
        fleet.close_idle("prod")                      # an idle timeout, on kept-alive connections
        fleet.write_kubeconfigs(tmp, "clusters.yaml")  # DIR/<id>.yaml + DIR/clusters.yaml

Randomness replays: `SimFleet(..., seed=7)` (or `sim: {seed: 7}` in the fleet file) fixes
every cluster's pod jitter and names and every injected fault (`error_rate`, latency
ranges: the n-th `METHOD path` of a cluster always gets the same fate). Without a seed one
is drawn and kept in `fleet.seed`, so a failure can still be replayed. Time can be driven:
`SimFleet(..., clock=ManualClock())` and `fleet.advance(seconds)` (see clock.py).

Every public method may be called from any thread; work on the cluster state is done on the
fleet's loop thread.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from console.sim import tls
from console.sim.clock import ManualClock, SimClock
from console.sim.cluster import SimCluster
from console.sim.faults import ClusterSettings
from console.sim.fleetfile import read_yaml as _read_yaml
from console.sim.fleetfile import write_fleet_files
from console.sim.registry import DemoRegistry
from console.sim.server import Handler

T = TypeVar("T")


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster id and its `sim:` settings (see faults.py)."""

    id: str
    sim: Mapping[str, Any] = field(default_factory=dict)


def _listen(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _end_tasks(timeout: float = 5.0) -> None:
    """Cancel every other task of the loop and wait for them to end, as `asyncio.run`
    does before it closes its loop. The shutdown leaves some running: a request still in
    its injected latency, a watch that began waiting after the stop ended every watch and
    whose client went away (its connection unknown to the shutdown). Left pending on the
    closed loop, they were destroyed later, a watch's `Queue.get` raising 'Event loop is
    closed' where nobody could catch it (pytest's unraisable-exception warning)."""
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    deadline = loop.time() + timeout
    ended: set[asyncio.Task[Any]] = set()
    while True:
        tasks = asyncio.all_tasks() - {current}      # the pending ones
        if not tasks or loop.time() >= deadline:
            break
        ended |= tasks
        for task in tasks:
            task.cancel()
        # Again while any is left: a task may take a cancellation for a timeout (Python
        # 3.11's wait_for, cancelled as its wait ends) and wait again.
        await asyncio.wait(tasks, timeout=min(0.5, max(0.0, deadline - loop.time())))
    for task in ended:
        if task.done() and not task.cancelled():
            task.exception()        # retrieved: an error of a stopped handler is not news


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SimFleet(tls.ServesCA):
    """N simulated clusters on loopback HTTPS ports, plus a demo OCI registry."""

    def __init__(self, clusters: Sequence[str | ClusterSpec], *, readiness_delay: float = 1.0,
                 jitter: float = 1.0, never_pull: Iterable[str] = (), crash: Iterable[str] = (),
                 registry_missing: Iterable[str] = (), lag_generation: float = 0.0,
                 seed: int | None = None, clock: SimClock | None = None,
                 **fleet_settings: Any) -> None:
        specs = [c if isinstance(c, ClusterSpec) else ClusterSpec(str(c)) for c in clusters]
        ids = [s.id for s in specs]
        if len(set(ids)) != len(ids):
            raise ValueError("cluster ids must be unique")
        self.specs = specs
        self.defaults: dict[str, Any] = {"readiness_delay": readiness_delay, "jitter": jitter,
                                         "never_pull": tuple(never_pull), "crash": tuple(crash),
                                         "lag_generation": lag_generation, **fleet_settings}
        self.registry_missing: tuple[str, ...] = tuple(registry_missing)
        # Built now so that a bad setting fails here, naming the cluster, not in the loop thread.
        self._settings = {spec.id: self._settings_for(spec) for spec in specs}
        # Every random choice derives from the seed; one is drawn (and kept) when none is given.
        self.seeded = seed is not None
        self.seed = int(seed) if seed is not None else secrets.randbelow(2**31)
        self.clock = clock or SimClock()
        self.config_path: Path | None = None
        self.clusters: dict[str, SimCluster] = {}
        self._by_port: dict[int, SimCluster] = {}
        self._sites: dict[str, web.BaseSite] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None
        self._registry_runner: web.ServerRunner | None = None
        self._registry: DemoRegistry | None = None
        self._active: dict[tuple[str, str], float] = {}  # rolling now -> since (clock time)
        self._finished: list[tuple[str, str, float]] = []
        self._max_active = 0
        self._tmp: str | None = None
        self.tls: tls.FleetTLS | None = None
        self.registry_port = 0

    def _settings_for(self, spec: ClusterSpec) -> ClusterSettings:
        settings = ClusterSettings()
        try:
            settings.update({k: v for k, v in self.defaults.items() if v is not None}, strict=False)
        except ValueError as exc:
            raise ValueError(f"sim.{exc}") from None
        if not isinstance(spec.sim, Mapping):
            raise ValueError(f"cluster {spec.id}: sim must be a mapping")
        try:
            settings.update(spec.sim, strict=False)
        except ValueError as exc:
            raise ValueError(f"cluster {spec.id}: sim.{exc}") from None
        return settings

    # --- construction from a fleet file ---------------------------------------------------

    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> SimFleet:
        """A fleet with the ids and `sim:` blocks of a clusters.yaml (raw YAML, unknown keys ignored)."""
        path = Path(path)
        raw = _read_yaml(path) or {}
        fleet_sim = dict(raw.get("sim") or {}) if isinstance(raw, dict) else {}
        specs = []
        for entry in (raw.get("clusters") or []) if isinstance(raw, dict) else []:
            if isinstance(entry, dict) and entry.get("id"):
                specs.append(ClusterSpec(str(entry["id"]), dict(entry.get("sim") or {})))
        # Every fleet-wide key is a default for each cluster (see faults.py); unknown ones are kept
        # aside by ClusterSettings rather than refused.
        kwargs: dict[str, Any] = {str(k): v for k, v in fleet_sim.items()}
        if kwargs.get("seed") is not None:
            try:
                kwargs["seed"] = int(kwargs["seed"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: sim.seed: {kwargs['seed']!r} is not an integer") \
                    from None
        for k in ("never_pull", "crash", "registry_missing"):
            if isinstance(kwargs.get(k), str):
                kwargs[k] = (kwargs[k],)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        fleet = cls(specs, **kwargs)
        fleet.config_path = path
        return fleet

    # --- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> SimFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> SimFleet:
        """Start the loop thread and every listening port; returns when all listen."""
        if self._loop is not None:
            return self
        self.tls = tls.generate()
        self._tmp = tempfile.mkdtemp(prefix="release-console-sim-")
        Path(self._tmp, "ca.crt").write_bytes(self.tls.ca_pem)
        self._loop = asyncio.new_event_loop()
        self.clock.bind(self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="sim-fleet", daemon=True)
        self._thread.start()
        try:
            self._run(self._start(), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        assert self.tls is not None and self._loop is not None
        self._ssl = self.tls.server_context()
        self._runner = web.ServerRunner(web.Server(Handler(self._by_port)), shutdown_timeout=0.5,
                                        handle_signals=False)
        await self._runner.setup()
        for spec in self.specs:
            settings = self._settings[spec.id]
            cluster = SimCluster(spec.id, settings, self._loop, self._on_rollout, self.seed,
                                 self.clock)
            self.clusters[spec.id] = cluster
            if settings.unreachable:
                cluster.port = _free_port()
                cluster.alive = False
                cluster.controller.paused = True
            else:
                await self._open(cluster)
            self._schedule_death(cluster)
        self._registry = DemoRegistry(lambda: self.registry_missing)
        self._registry_runner = web.ServerRunner(web.Server(self._registry), shutdown_timeout=0.5,
                                                 handle_signals=False)
        await self._registry_runner.setup()
        sock = _listen()
        self.registry_port = sock.getsockname()[1]
        await web.SockSite(self._registry_runner, sock, ssl_context=self._ssl).start()

    async def _open(self, cluster: SimCluster, port: int = 0) -> None:
        assert self._runner is not None
        sock = _listen(port)
        cluster.port = sock.getsockname()[1]
        self._by_port[cluster.port] = cluster
        site = web.SockSite(self._runner, sock, ssl_context=self._ssl)
        await site.start()
        self._sites[cluster.id] = site

    def stop(self) -> None:
        """Stop serving, end every watch, stop the loop thread, remove temporary files."""
        loop = self._loop
        if loop is None:
            return
        if loop.is_running():
            try:
                self._run(self._stop(), 15.0)
            except Exception:  # stopping is best effort: the loop is torn down below anyway
                pass
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10.0)
        loop.close()
        self._loop = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    async def _stop(self) -> None:
        for cluster in self.clusters.values():
            cluster.controller.stop()
            cluster.store.close_watchers()
        for runner in (self._runner, self._registry_runner):
            if runner is not None:
                await runner.cleanup()
        await _end_tasks()

    @property
    def running(self) -> bool:
        """Whether the fleet serves (between start and stop)."""
        return self._loop is not None

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        assert self._loop is not None, "the fleet is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn()` on the fleet's loop thread and return its result."""
        async def wrapper() -> T:
            return fn()
        return self._run(wrapper(), timeout)

    # --- faults and liveness --------------------------------------------------------------

    def _schedule_death(self, cluster: SimCluster) -> None:
        assert self._loop is not None
        die_at = cluster.settings.die_at
        if die_at is None:
            return
        async def die_then_revive() -> None:
            await self._kill(cluster)
            if cluster.settings.revive_after is not None:
                await self.clock.sleep(cluster.settings.revive_after)
                await self._revive(cluster)
        self.clock.call_later(die_at, lambda: asyncio.ensure_future(die_then_revive()))

    async def _kill(self, cluster: SimCluster) -> None:
        if not cluster.alive:
            return
        cluster.alive = False
        cluster.controller.paused = True
        site = self._sites.pop(cluster.id, None)
        if site is not None:
            await site.stop()
        cluster.store.close_watchers()
        # Kept-alive connections stay open (a request on one is answered by a reset:
        # `Handler`), unlike a real server's death, which drops them at once: doing so
        # made a dead cluster fail its next call without the retry the reset costs now -
        # see docs/reliability.md, "Known limits".

    def _close_idle(self, cluster: SimCluster) -> int:
        """Close the cluster's connections waiting for their next request, cleanly (as
        aiohttp's own keep-alive timeout does); how many."""
        server = self._runner.server if self._runner is not None else None
        closed = 0
        for handler in list(server.connections) if server is not None else ():
            transport = handler.transport
            sockname = transport.get_extra_info("sockname") if transport is not None else None
            if not sockname or sockname[1] != cluster.port:
                continue
            # Between requests, as aiohttp's own keep-alive timeout tells it.
            waiter = handler._waiter
            if handler._request_in_progress or waiter is None or waiter.done():
                continue
            handler.force_close()
            closed += 1
        return closed

    async def _revive(self, cluster: SimCluster) -> None:
        if cluster.alive:
            return
        await self._open(cluster, cluster.port)
        cluster.alive = True
        cluster.controller.resume()

    def kill(self, cluster_id: str) -> None:
        """Close the cluster's port and drop its watches; a request on a connection kept
        alive is answered by a reset (state is kept)."""
        self._run(self._kill(self._cluster(cluster_id)))

    def close_idle(self, cluster_id: str) -> int:
        """Close the cluster's kept-alive connections that wait for their next request,
        as an API server's (or a proxy's) idle timeout closes them; how many. The
        clients' next calls must open new ones (`drop_reused`: the same closing just as
        a request comes in)."""
        cluster = self._cluster(cluster_id)
        return self.call(lambda: self._close_idle(cluster))

    def revive(self, cluster_id: str) -> None:
        """Listen again on the same port with the state the cluster had."""
        self._run(self._revive(self._cluster(cluster_id)))

    def set_faults(self, cluster_id: str, **settings: Any) -> None:
        """Change a cluster's settings (keys as in faults.py); unknown keys raise TypeError."""
        cluster = self._cluster(cluster_id)

        def apply() -> None:
            cluster.settings.update(settings)
            cluster.sync_nodes()
            if "crash" in settings:
                # A crash fault set later hits pods already running (crash after Ready).
                cluster.controller.kubelet.crash_running()
            if "die_at" in settings:
                self._schedule_death(cluster)
        self.call(apply)
        if "unreachable" in settings:
            (self.kill if settings["unreachable"] else self.revive)(cluster_id)

    def advance(self, seconds: float) -> int:
        """Move a `ManualClock` on by `seconds`: every timer due by then fires, in order
        (pods get ready, deadlines pass, clusters die and revive); returns how many ran."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs a fleet made with clock=ManualClock()")
        clock = self.clock
        return self._run(clock.advance(seconds))

    def set_registry_missing(self, globs: Iterable[str]) -> None:
        """The tag globs the demo registry reports as missing."""
        self.registry_missing = tuple(globs)

    # --- rollout tracking -----------------------------------------------------------------

    def _on_rollout(self, cluster_id: str, key: str, active: bool) -> None:
        item = (cluster_id, key)
        if active:
            if item not in self._active:
                self._active[item] = self.clock.time()
                self._max_active = max(self._max_active, len(self._active))
        elif item in self._active:
            started = self._active.pop(item)
            self._finished.append((cluster_id, key, self.clock.time() - started))

    def rollout_durations(self) -> list[tuple[str, str, float]]:
        """(cluster, namespace/name, seconds) of every rollout that ended, as the simulator saw it:
        from the first sync of a new spec to complete (or to its progress deadline)."""
        return self.call(lambda: list(self._finished))

    # Read through the loop: work a request queued (controller syncs) is done before the answer.
    @property
    def max_concurrent_rollouts(self) -> int:
        """The most Deployments rolling at the same time across the fleet so far."""
        return self.call(lambda: self._max_active)

    @property
    def active_rollouts(self) -> int:
        """Deployments rolling right now across the fleet."""
        return self.call(lambda: len(self._active))

    def reset_max_concurrent_rollouts(self) -> None:
        """Restart the high-water mark from the current count."""
        def reset() -> None:
            self._max_active = len(self._active)
        self.call(reset)

    # --- access ---------------------------------------------------------------------------

    @property
    def ids(self) -> tuple[str, ...]:
        """Cluster ids in order."""
        return tuple(s.id for s in self.specs)

    def _cluster(self, cluster_id: str) -> SimCluster:
        try:
            return self.clusters[cluster_id]
        except KeyError:
            raise KeyError(f"no simulated cluster {cluster_id!r}") from None

    def url(self, cluster_id: str) -> str:
        """https://127.0.0.1:PORT of a cluster."""
        return f"https://127.0.0.1:{self._cluster(cluster_id).port}"

    def port(self, cluster_id: str) -> int:
        """The cluster's port."""
        return self._cluster(cluster_id).port

    def _started_ca(self) -> tls.FleetTLS:
        assert self.tls is not None, "the fleet is not started"
        return self.tls

    @property
    def ca_file(self) -> Path:
        """A file holding the fleet CA (valid while the fleet runs)."""
        assert self._tmp is not None, "the fleet is not started"
        return Path(self._tmp, "ca.crt")

    @property
    def registry_url(self) -> str:
        """https://127.0.0.1:PORT of the demo registry."""
        return f"https://127.0.0.1:{self.registry_port}"

    @property
    def registry_host(self) -> str:
        """127.0.0.1:PORT, the registry host part of image references."""
        return f"127.0.0.1:{self.registry_port}"

    def admin_token(self, cluster_id: str) -> str:
        """The cluster's full-rights token."""
        return self._cluster(cluster_id).admin_token

    def kubeconfig(self, cluster_id: str, token: str | None = None) -> dict[str, Any]:
        """A plain kubeconfig for one cluster (full-rights token unless `token` is given)."""
        cluster = self._cluster(cluster_id)
        return {"apiVersion": "v1", "kind": "Config", "preferences": {},
                "clusters": [{"name": cluster_id, "cluster": {
                    "server": self.url(cluster_id),
                    "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}}],
                "users": [{"name": cluster_id, "user": {"token": token or cluster.admin_token}}],
                "contexts": [{"name": cluster_id, "context": {"cluster": cluster_id, "user": cluster_id}}],
                "current-context": cluster_id}

    def add_token(self, cluster_id: str, rules: Sequence[Mapping[str, Any]] | None,
                  username: str | None = None) -> str:
        """A new token on one cluster limited to `rules` (see rbac.py; None = full rights)."""
        cluster = self._cluster(cluster_id)
        return self.call(lambda: cluster.add_token(rules, username))

    def counters(self, cluster_id: str) -> dict[str, Any]:
        """Requests of one cluster: total, by_verb, by_resource, by_verb_resource, injected_errors."""
        cluster = self._cluster(cluster_id)
        return self.call(cluster.counter_summary)

    def registry_counters(self) -> dict[str, int]:
        """Requests to the demo registry by `METHOD kind`."""
        assert self._registry is not None
        return self.call(lambda: dict(self._registry.counters))  # type: ignore[union-attr]

    def get(self, cluster_id: str, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of a stored object (`resource` as `apps/deployments`, `/pods`), or None."""
        cluster = self._cluster(cluster_id)
        return self.call(lambda: copy.deepcopy(cluster.store.get(resource, namespace, name)))

    def list(self, cluster_id: str, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of stored objects of one resource (`apps/replicasets`, `/pods`...)."""
        cluster = self._cluster(cluster_id)
        return self.call(lambda: copy.deepcopy(cluster.store.list(resource, namespace)))

    # --- files ----------------------------------------------------------------------------

    def write_kubeconfigs(self, directory: str | Path, config_path: str | Path | None = None) -> Path:
        """Write DIR/<id>.yaml per cluster, DIR/ca.crt and DIR/clusters.yaml; returns the latter.

        clusters.yaml is the input fleet (`config_path`, else the one this fleet came from)
        with each cluster's credentials pointing at its kubeconfig (a `server` pin rewritten
        to the simulator, a `ca_sha256` pin to its CA), `app.image` on the demo registry,
        `app.registry.ca_file` the fleet CA, and relative paths made absolute.
        """
        return write_fleet_files(self, directory, config_path or self.config_path, made_by="sim")

    def settings_of(self, cluster_id: str) -> ClusterSettings:
        """A copy of one cluster's settings as read from the fleet file and overrides
        (before the fleet starts too: `release-console lab` reads `sim:` blocks through it)."""
        return copy.deepcopy(self._settings[cluster_id])
