"""`LabFleet`: real Kubernetes control planes on loopback, one per fleet cluster.

    lab = LabFleet.from_config("clusters.yaml", "/tmp/lab")   # or LabFleet(["c0", "c1"], "/tmp/lab")
    with lab:                                                  # start() ... stop()
        lab.write_kubeconfigs("/tmp/lab")                      # DIR/<id>.yaml + DIR/clusters.yaml
        lab.kubeconfig("c0")                                   # admin kubeconfig (dict)

Per cluster: a kube-apiserver (TLS from the lab's CA, certificate and service-account
token authentication, Node,RBAC authorisation), a kube-controller-manager, a kube-scheduler
and a KWOK that plays the nodes and pods. All clusters share one etcd under per-cluster key
prefixes (`/registry-<id>`): measured on this 2-core machine (bench/lab_start.py), five
clusters were ready in 8.7 s with 2374 MiB resident on one etcd and in 10.8 s with
2518 MiB on one etcd each - about 30 MB and 0.4 s more per cluster, for an isolation the
lab does not need (the prefixes already keep the clusters apart, and the lab is scratch)
(`etcd_per_cluster=True` keeps the other layout for comparison). A demo OCI registry (the
simulator's, served with the lab's CA) answers image checks. Logs go to DIR/logs/.

The fleet file's `sim:` settings are read exactly as `release-console sim` reads them
(console.sim's parser): readiness_delay, jitter, never_pull, crash, nodes, node_cpu,
node_memory and registry_missing are honoured; the fault injections that need an imitated
API server (error_rate, latency, unreachable, die_at, lag_generation...) are not.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from console import binaries
from console.lab import components, pki, processes, stages
from console.sim import ClusterSpec, SimFleet
from console.sim.faults import ClusterSettings
from console.sim.tls import ServesCA
from console.sim.fleetfile import write_fleet_files

PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_ANNOTATION = "kwok.x-k8s.io/node"


class LabError(RuntimeError):
    """The lab could not start: the message says which component and why."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_programs() -> dict[str, Path]:
    """The lab's programs (console.binaries: $RELEASE_CONSOLE_BIN, .cache/bin, then PATH)."""
    found = {name: binaries.find(name) for name in PROGRAMS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        looked = ", ".join(str(p) for p in binaries.search_path())
        raise LabError(f"lab: {', '.join(missing)} not found on PATH nor in {looked}: run "
                       "`make bin` in a checkout (builds them from their pinned Go modules)")
    return {name: path for name, path in found.items() if path is not None}


class LabFleet(ServesCA):
    """Real control planes for `clusters`, with logs under `directory`/logs."""

    def __init__(self, clusters: Sequence[str | ClusterSpec], directory: str | Path, *,
                 settings: dict[str, ClusterSettings] | None = None,
                 registry_missing: Iterable[str] = (), etcd_per_cluster: bool = False,
                 **fleet_settings: Any) -> None:
        specs = [c if isinstance(c, ClusterSpec) else ClusterSpec(str(c)) for c in clusters]
        if settings is None:
            # The simulator's defaults and parser, so both fleets read settings alike.
            parsed = SimFleet(specs, **fleet_settings)
            settings = {s.id: parsed.settings_of(s.id) for s in specs}
        self.specs = specs
        self.settings = settings
        self.registry_missing = tuple(registry_missing)
        self.directory = Path(directory).expanduser().resolve()
        self.etcd_per_cluster = etcd_per_cluster
        self.config_path: Path | None = None
        self.ports: dict[str, int] = {}
        self.children: list[processes.Child] = []
        self.killed: list[str] = []   # what the last stop() had to SIGKILL
        self.started_in = 0.0
        self._tmp: Path | None = None
        self._pki: pki.LabPKI | None = None
        self._ssl: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self.registry_port = 0
        self._cancel = threading.Event()
        self.kube_version = ""

    @classmethod
    def from_config(cls, path: str | Path, directory: str | Path, **overrides: Any) -> LabFleet:
        """One cluster per `clusters[]` entry of a fleet file, `sim:` blocks read as `sim` does."""
        parsed = SimFleet.from_config(path, **overrides)
        lab = cls(parsed.specs, directory, settings={cid: parsed.settings_of(cid) for cid in parsed.ids},
                  registry_missing=parsed.registry_missing)
        lab.config_path = Path(path)
        return lab

    # --- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> LabFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 240.0, progress: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None) -> LabFleet:
        """Start every component and wait until each cluster answers and has Ready nodes.

        Setting `cancel` (a signal handler does) stops the start: every process started so
        far is stopped and LabError("interrupted") raised.
        """
        say = progress or (lambda _: None)
        self._cancel = cancel or threading.Event()
        began = time.monotonic()
        deadline = began + timeout
        programs = find_programs()
        self._tmp = Path(tempfile.mkdtemp(prefix="release-console-lab-"))
        logs = self.directory / "logs"
        if logs.exists():
            shutil.rmtree(logs)
        try:
            self._pki = pki.generate(self._tmp / "pki")
            self._ssl = self._client_context("admin")
            etcd_urls = self._start_etcd(programs["etcd"], logs, deadline)
            for n, spec in enumerate(self.specs):
                port = self.ports[spec.id] = _free_port()
                self.children.append(processes.start(
                    f"{spec.id}/kube-apiserver",
                    components.kube_apiserver(programs["kube-apiserver"], self._pki, port,
                                              etcd_urls[n], f"/registry-{spec.id}", spec.id),
                    logs / spec.id / "kube-apiserver.log",
                    # Collect garbage sooner: ~50 MB less per kube-apiserver (of ~290),
                    # which is what lets five clusters fit in 3 GB with room to spare.
                    env={"GOGC": os.environ.get("GOGC", "50")}))
            say(f"lab: {len(self.specs)} kube-apiserver(s) starting")
            for spec in self.specs:
                self._wait(spec.id, "kube-apiserver", deadline,
                           lambda cid=spec.id: self._status(cid, "GET", "/readyz") == 200)
            status, version = self.request(self.specs[0].id, "GET", "/version")
            self.kube_version = str(version.get("gitVersion", "")) if status == 200 else ""
            for n, spec in enumerate(self.specs):
                self._start_cluster_components(n, spec.id, programs, logs)
            for spec in self.specs:
                self._wait(spec.id, "nodes", deadline, lambda cid=spec.id: self._nodes_ready(cid))
                # The serviceaccount controller at work: pods can be admitted in new namespaces.
                self._wait(spec.id, "kube-controller-manager", deadline,
                           lambda cid=spec.id: self._status(
                               cid, "GET", "/api/v1/namespaces/default/serviceaccounts/default") == 200)
            self._start_registry()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _start_etcd(self, binary: Path, logs: Path, deadline: float) -> list[str]:
        assert self._tmp is not None
        count = len(self.specs) if self.etcd_per_cluster else 1
        urls = []
        for n in range(count):
            client, peer = _free_port(), _free_port()
            name = f"{self.specs[n].id}/etcd" if self.etcd_per_cluster else "etcd"
            log = logs / (f"{self.specs[n].id}/etcd.log" if self.etcd_per_cluster else "etcd.log")
            self.children.append(processes.start(
                name, components.etcd(binary, self._tmp / f"etcd-{n}", client, peer), log))
            urls.append(f"http://127.0.0.1:{client}")
        for url in urls:
            host, port = url.removeprefix("http://").split(":")
            self._wait("lab", "etcd", deadline, lambda h=host, p=int(port): _http_ok(h, p, "/health"))
        return urls if self.etcd_per_cluster else urls * len(self.specs)

    def _start_cluster_components(self, n: int, cid: str, programs: dict[str, Path], logs: Path) -> None:
        assert self._tmp is not None and self._pki is not None
        home = self._tmp / cid
        home.mkdir(parents=True, exist_ok=True)
        configs = {who: home / f"{who}.kubeconfig" for who in ("controller-manager", "scheduler", "kwok")}
        for who, path in configs.items():
            path.write_text(yaml.safe_dump(self._kubeconfig(cid, who, files=True)))
            path.chmod(0o600)
        s = self.settings[cid]
        kwok_config = home / "kwok.yaml"
        kwok_config.write_text(yaml.safe_dump_all(
            stages.config(s.readiness_delay, s.jitter, s.never_pull, s.crash), sort_keys=False))
        self.children += [
            processes.start(f"{cid}/kube-controller-manager", components.kube_controller_manager(
                programs["kube-controller-manager"], self._pki, configs["controller-manager"]),
                logs / cid / "kube-controller-manager.log"),
            processes.start(f"{cid}/kube-scheduler", components.kube_scheduler(
                programs["kube-scheduler"], configs["scheduler"]), logs / cid / "kube-scheduler.log"),
            processes.start(f"{cid}/kwok", components.kwok(
                programs["kwok"], configs["kwok"], kwok_config, f"10.{64 + n % 128}.0.0/16"),
                logs / cid / "kwok.log"),
        ]
        for i in range(s.nodes):
            self._create_node(cid, f"{cid}-node-{i}", s)

    def _create_node(self, cid: str, name: str, s: ClusterSettings) -> None:
        resources = {"cpu": s.node_cpu, "memory": s.node_memory, "pods": "110"}
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {NODE_ANNOTATION: "fake"},
                             "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64", "type": "kwok",
                                        "node-role.kubernetes.io/worker": ""}},
                "status": {"capacity": resources, "allocatable": resources,
                           "nodeInfo": {"kubeletVersion": f"{self.kube_version}-kwok",
                                        "kubeProxyVersion": f"{self.kube_version}-kwok",
                                        "containerRuntimeVersion": "kwok", "operatingSystem": "linux",
                                        "architecture": "amd64", "kernelVersion": "kwok",
                                        "osImage": "kwok", "machineID": "", "systemUUID": "",
                                        "bootID": ""}}}
        status, body = self.request(cid, "POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise LabError(f"lab: {cid}: creating node {name} answered {status}: {body!r:.300}")

    def stop(self) -> None:
        """Stop every process the lab started, the registry, and remove its private files."""
        # KWOK, controllers and schedulers first, then the kube-apiservers, then etcd.
        def tier(child: processes.Child) -> int:
            kind = child.name.rsplit("/", 1)[-1]
            return {"kube-apiserver": 1, "etcd": 2}.get(kind, 0)
        self.killed = processes.stop_all(
            [[c for c in self.children if tier(c) == n] for n in range(3)])
        self.children = []
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(10)
            self._loop = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _wait(self, cid: str, what: str, deadline: float, ready: Callable[[], bool]) -> None:
        while True:
            if self._cancel.is_set():
                raise LabError("lab: interrupted while starting")
            dead = [c for c in self.children if not c.alive()]
            if dead:
                raise LabError(f"lab: {dead[0].name} exited with code {dead[0].popen.returncode} "
                               f"(log {dead[0].log}):\n{dead[0].tail()}")
            try:
                if ready():
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if time.monotonic() > deadline:
                logs = [c for c in self.children if c.name.startswith(f"{cid}/")] or self.children
                raise LabError(f"lab: {cid}: {what} not ready in time; last log lines of "
                               f"{logs[0].name} ({logs[0].log}):\n{logs[0].tail()}")
            time.sleep(0.2)

    def _nodes_ready(self, cid: str) -> bool:
        status, body = self.request(cid, "GET", "/api/v1/nodes")
        if status != 200:
            return False
        items = body.get("items") or []
        # Ready, and the node-lifecycle controller has lifted the not-ready taint that
        # kube-apiserver puts on every new node (else nothing schedules).
        ready = [n for n in items
                 if any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (n.get("status") or {}).get("conditions") or ())
                 and not any(t.get("key", "").startswith("node.kubernetes.io/")
                             for t in (n.get("spec") or {}).get("taints") or ())]
        return len(ready) >= self.settings[cid].nodes

    def _start_registry(self) -> None:
        from aiohttp import web

        from console.sim.registry import DemoRegistry

        assert self._pki is not None
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(self._pki.path("server.crt"), self._pki.path("server.key"))
        loop = self._loop = asyncio.new_event_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        self.registry_port = sock.getsockname()[1]

        async def serve() -> None:
            runner = web.ServerRunner(web.Server(DemoRegistry(lambda: self.registry_missing)),
                                      handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=server_ctx).start()

        self._loop_thread = threading.Thread(target=loop.run_forever, name="lab-registry", daemon=True)
        self._loop_thread.start()
        asyncio.run_coroutine_threadsafe(serve(), loop).result(30)

    # --- talking to a cluster -------------------------------------------------------------

    def _client_context(self, who: str) -> ssl.SSLContext:
        assert self._pki is not None
        ctx = ssl.create_default_context(cafile=str(self._pki.path("ca.crt")))
        ctx.load_cert_chain(self._pki.path(f"{who}.crt"), self._pki.path(f"{who}.key"))
        return ctx

    def request(self, cid: str, method: str, path: str, body: Any = None,
                content_type: str = "application/json", timeout: float = 15.0) -> tuple[int, Any]:
        """(status, decoded JSON or text) of one admin request to a cluster."""
        assert self._ssl is not None, "the lab is not started"
        conn = http.client.HTTPSConnection("127.0.0.1", self.ports[cid], context=self._ssl,
                                           timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": content_type, "Accept": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def _status(self, cid: str, method: str, path: str) -> int:
        return self.request(cid, method, path, timeout=5.0)[0]

    def token(self, cid: str, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """A token for a ServiceAccount minted by the cluster's TokenRequest API."""
        status, body = self.request(
            cid, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": seconds}})
        if status != 201:
            raise LabError(f"lab: {cid}: TokenRequest for {namespace}/{service_account} "
                           f"answered {status}: {body!r:.300}")
        return str(body["status"]["token"])

    @staticmethod
    def _path(resource: str, namespace: str | None, name: str = "") -> str:
        """The URL path of `apps/deployments`, `/pods`... (console.sim's notation, version v1)."""
        group, _, plural = resource.partition("/")
        base = "/api/v1" if not group else f"/apis/{group}/v1"
        where = f"/namespaces/{namespace}" if namespace else ""
        return f"{base}{where}/{plural}" + (f"/{name}" if name else "")

    def get(self, cid: str, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object (`resource` as `apps/deployments`, `/pods`), or None; as SimFleet.get."""
        status, body = self.request(cid, "GET", self._path(resource, namespace, name))
        if status == 404:
            return None
        if status != 200:
            raise LabError(f"lab: {cid}: GET {resource} {namespace}/{name} answered {status}")
        return dict(body)

    def list(self, cid: str, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of one resource (in one namespace, or all); as SimFleet.list."""
        status, body = self.request(cid, "GET", self._path(resource, namespace))
        if status != 200:
            raise LabError(f"lab: {cid}: LIST {resource} in {namespace} answered {status}")
        return list(body.get("items") or [])

    # --- what the console needs (console.sim.fleetfile.LocalFleet) ------------------------

    @property
    def ids(self) -> tuple[str, ...]:
        """Cluster ids in order."""
        return tuple(s.id for s in self.specs)

    def url(self, cluster_id: str) -> str:
        """https://127.0.0.1:PORT of a cluster's kube-apiserver."""
        return f"https://127.0.0.1:{self.ports[cluster_id]}"

    def _started_ca(self) -> pki.LabPKI:  # type: ignore[override] - the same two fields
        assert self._pki is not None, "the lab is not started"
        return self._pki

    @property
    def registry_host(self) -> str:
        """127.0.0.1:PORT of the demo registry."""
        return f"127.0.0.1:{self.registry_port}"

    def _kubeconfig(self, cid: str, who: str, files: bool = False, token: str | None = None) -> dict[str, Any]:
        assert self._pki is not None
        p = self._pki.path
        if token is not None:
            user: dict[str, Any] = {"token": token}
        elif files:
            user = {"client-certificate": str(p(f"{who}.crt")), "client-key": str(p(f"{who}.key"))}
        else:
            user = {"client-certificate-data": base64.b64encode(p(f"{who}.crt").read_bytes()).decode(),
                    "client-key-data": base64.b64encode(p(f"{who}.key").read_bytes()).decode()}
        return {"apiVersion": "v1", "kind": "Config", "preferences": {},
                "clusters": [{"name": cid, "cluster": {
                    "server": self.url(cid),
                    "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}}],
                "users": [{"name": f"{cid}-{who}", "user": user}],
                "contexts": [{"name": cid, "context": {"cluster": cid, "user": f"{cid}-{who}"}}],
                "current-context": cid}

    def kubeconfig(self, cluster_id: str, token: str | None = None) -> dict[str, Any]:
        """The cluster's admin kubeconfig (client certificate inline), or one with `token` only."""
        return self._kubeconfig(cluster_id, "admin", token=token)

    def write_kubeconfigs(self, directory: str | Path | None = None,
                          config_path: str | Path | None = None) -> Path:
        """DIR/<id>.yaml admin kubeconfigs, DIR/ca.crt and DIR/clusters.yaml (as `sim` writes them)."""
        return write_fleet_files(self, directory or self.directory, config_path or self.config_path,
                                 made_by="lab")

    def memory_bytes(self) -> int:
        """Resident memory of every process the lab started (etcd, apiservers, ...)."""
        return sum(c.rss_bytes() for c in self.children)


def _http_ok(host: str, port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    finally:
        conn.close()
