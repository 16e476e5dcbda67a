"""The fleet model: frozen dataclasses for a loaded `clusters.yaml`.

`FleetConfig` holds the app, the clusters (credentials source, namespace, merged
values), the named strategies, the Vault settings and the simulator's free-form `sim`
blocks. The constants here are the defaults and reserved names the loader applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from functools import cached_property
from pathlib import Path
from typing import Any

from console.config.checks import did_you_mean
from console.errors import ConfigError, ValidationError
from console.names import show

DEFAULT_ROLLOUT_TIMEOUT = 600.0
DEFAULT_VAULT_PATH_PATTERN = "secret/kubeconfigs/{cluster}"
DEFAULT_HISTORY_PATH = ".release-history"
BUILTIN_STRATEGIES = ("serial", "parallel")
NOTIFY_EVENTS = ("failure", "success", "gate")
PRODUCTION_GROUPS = ("prod", "production")
# Names the renderer fills itself; a `values` key may not shadow them.
RESERVED_VALUE_NAMES = ("app", "cluster", "namespace", "image", "tag")
# Wave entry meaning "every target not placed in an earlier wave".
REST = "rest"
# `freeze:` day names, Monday first (`FreezeWindow.days` holds their indexes).
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class HistoryConfig:
    """Where the release ledger lives: a Git repository path and an optional remote."""

    path: Path
    remote: str | None = None


@dataclass(frozen=True)
class EmailConfig:
    """SMTP notification settings; the password is read from `password_env` at send time."""

    to: tuple[str, ...]
    sender: str
    host: str
    port: int = 587
    starttls: bool = True
    username_env: str | None = None
    password_env: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class NotifyConfig:
    """When to notify (`failure`, `success`, `gate`) and through which channels."""

    on: tuple[str, ...] = ("failure",)
    slack_webhook: str | None = None  # the URL is a secret: never log it
    slack_webhook_env: str | None = None  # or: the variable that holds the URL
    email: EmailConfig | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class RegistryConfig:
    """How to reach the image registry: TLS trust and where credentials come from."""

    ca_file: Path | None = None
    # Plain HTTP / unverified TLS: for a loopback registry (`insecure: true`), or for the
    # one host the fleet file names (`insecure: HOST[:PORT]`, kept in `insecure_host`).
    insecure: bool = False
    insecure_host: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    auth_file: Path | None = None
    timeout: float = 10.0
    vault: str | None = None  # KV v2 path holding `username` and `password`


@dataclass(frozen=True)
class ChartRegistryConfig:
    """How helm reaches the registry of an `oci://` chart (`app.chart_registry`): its login
    and TLS. The password is never held here, only where it comes from."""

    username_env: str | None = None  # environment variables holding the login ...
    password_env: str | None = None
    vault: str | None = None  # ... or a KV v2 path with `username` and `password` fields
    ca_file: Path | None = None  # the CA that verifies the registry (helm --ca-file)
    plain_http: bool = False  # helm --plain-http: a loopback host, or the one host named

    @property
    def login(self) -> bool:
        """Whether helm logs in to the registry."""
        return bool(self.vault or self.password_env)


@dataclass(frozen=True)
class ChartConfig:
    """The app shipped as a Helm chart (`app.chart`) instead of manifest templates."""

    chart: str  # an absolute chart directory, or an oci:// reference
    release: str  # the Helm release name (default: the app name)
    version: str | None = None  # app.chart_version (oci:// charts)
    tag_key: str = "image.tag"  # app.chart_keys: where --set-string puts the tag ...
    cluster_key: str = "cluster"  # ... the cluster id ...
    repository_key: str | None = "image.repository"  # ... and app.image (None: not set)
    digest_key: str = "image.digest"  # ... and the pinned digest (when a release pins one)
    storage: str = "secret"  # app.helm_storage: Helm's release storage, secret | configmap
    timeout: float = 120.0  # app.helm_timeout: seconds one helm call may take
    registry: ChartRegistryConfig | None = None  # app.chart_registry (oci:// charts)

    @property
    def is_oci(self) -> bool:
        """Whether the chart comes from an OCI registry."""
        return self.chart.startswith("oci://")


@dataclass(frozen=True)
class App:
    """The application shipped to every cluster."""

    name: str
    image: str  # repository (registry host + path), no tag
    manifests: Path  # absolute directory of manifest templates
    namespace_rule: str
    rollout_timeout: float  # seconds
    history: HistoryConfig
    notify: NotifyConfig
    registry: RegistryConfig
    build_command: str | None = None
    chart: ChartConfig | None = None  # set: shipped with Helm, `manifests` unused

    def image_ref(self, tag: str, digest: str | None = None) -> str:
        """`repository:tag`, the image a release of `tag` runs; pinned to `digest`
        (`repository:tag@sha256:...`) when the release resolved one."""
        return f"{self.image}:{tag}@{digest}" if digest else f"{self.image}:{tag}"


@dataclass(frozen=True)
class Credentials:
    """Where a cluster's kubeconfig comes from and what it must match.

    At most one source is set: `kubeconfig` (a file), `env` (an environment variable
    holding a kubeconfig, or a path to one) or `vault` (a KV v2 path, `true` in the
    file resolved through `vault.path_pattern`). None set means the credentials module
    refuses the cluster at pre-flight.
    """

    kubeconfig: Path | None = None
    context: str | None = None
    env: str | None = None
    vault: str | None = None
    server: str | None = None  # pinned API server URL
    ca_sha256: str | None = None  # pinned CA certificate fingerprint, 64 lower-case hex
    # Opt-ins, each for one cluster: a credential that runs a program or fetches a token
    # (`exec`, `auth-provider`), and a kubeconfig that turns TLS verification off.
    allow_exec: bool = False
    allow_auth_provider: bool = False
    allow_insecure_tls: bool = False


@dataclass(frozen=True)
class Cluster:
    """One cluster of the fleet, with its rule-applied namespace and merged values."""

    id: str
    groups: tuple[str, ...]
    credentials: Credentials
    namespace: str
    values: Mapping[str, Any]
    sim: Mapping[str, Any]
    line: int
    production: bool


@dataclass(frozen=True)
class Strategy:
    """A named rollout strategy: waves of entries (ids, groups, globs, `N%`, `rest`)."""

    name: str
    waves: tuple[tuple[str, ...], ...]
    gates: bool = False
    max_failures: str | None = None  # "3" or "10%"
    max_parallel: int | None = None
    line: int = 0
    # Distinct approvers a gate needs (`approvals: 2`: four eyes), each through the
    # control channel or the terminal.
    approvals: int = 1
    # Seconds each wave is watched after it is healthy (`bake`), and per wave
    # (`{clusters: [...], bake: 5m}`; None: the strategy's).
    bake: float = 0.0
    wave_bakes: tuple[float | None, ...] = ()
    # `max_starts: N/DURATION`: at most N clusters start in any DURATION-long window.
    max_starts: tuple[int, float] | None = None
    # What a failure rolls back: the failed cluster, its whole wave, or every cluster
    # the release reached (`on_failure: cluster | wave | release`).
    on_failure: str = "cluster"


@dataclass(frozen=True)
class VaultConfig:
    """Vault/OpenBao settings; unset fields fall back to `VAULT_*` environment variables."""

    addr: str | None = None
    namespace: str | None = None
    cacert: Path | None = None
    path_pattern: str = DEFAULT_VAULT_PATH_PATTERN
    auth: str = "token"  # token | approle
    token_env: str = "VAULT_TOKEN"
    role_id_env: str = "VAULT_ROLE_ID"
    secret_id_env: str = "VAULT_SECRET_ID"
    approle_mount: str = "approle"
    timeout: float = 10.0

    def path_for(self, cluster_id: str) -> str:
        """The KV v2 path of `cluster_id`'s kubeconfig under `path_pattern`."""
        return self.path_pattern.replace("{cluster}", cluster_id)


@dataclass(frozen=True)
class FreezeWindow:
    """A time when releases to some clusters are refused (`freeze:` in the fleet file).

    Dated: `start`/`end` are aware datetimes. Recurring: it opens on each of `days`
    (0 = Monday) at `daily_start` local time in `timezone` and closes at `daily_end`, the
    next day when that is not later (equal: 24 hours). The queries are `console.freeze`.
    """

    name: str
    groups: tuple[str, ...]  # empty: the whole fleet
    reason: str
    start: datetime | None = None
    end: datetime | None = None
    days: tuple[int, ...] = ()
    daily_start: time | None = None
    daily_end: time | None = None
    timezone: str = "UTC"
    line: int = 0

    @property
    def recurring(self) -> bool:
        """Whether the window repeats on weekdays (else it is dated)."""
        return bool(self.days)

    def covers(self, groups: tuple[str, ...]) -> bool:
        """Whether a cluster with these groups is in the window's scope."""
        return not self.groups or any(g in self.groups for g in groups)


@dataclass(frozen=True)
class HealthCheck:
    """One metric gate: a PromQL query (`${cluster}` filled) whose value must stay within
    `max`/`min` during a bake."""

    name: str
    query: str
    max: float | None = None
    min: float | None = None


@dataclass(frozen=True)
class HealthConfig:
    """`health:` - the Prometheus the checks ask, and the checks."""

    url: str            # the Prometheus base URL, no trailing slash
    timeout: float      # s per query
    interval: float     # s between evaluations of a cluster's checks during a bake
    checks: tuple[HealthCheck, ...]


@dataclass(frozen=True)
class FleetConfig:
    """A loaded `clusters.yaml`."""

    path: Path  # absolute
    app: App
    clusters: tuple[Cluster, ...]
    strategies: Mapping[str, Strategy]
    vault: VaultConfig | None
    sim: Mapping[str, Any]
    raw: Mapping[str, Any]
    order: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # defaults.values
    source: str = ""  # the file name as given, for messages
    lines: Mapping[str, int] = field(default_factory=dict)  # dotted path -> 1-based line
    freeze: tuple[FreezeWindow, ...] = ()  # `freeze:` windows, in file order
    health: HealthConfig | None = None  # `health:` metric gates of every bake

    @property
    def ids(self) -> tuple[str, ...]:
        """Cluster ids in config order."""
        return tuple(c.id for c in self.clusters)

    @cached_property
    def _by_id(self) -> dict[str, Cluster]:
        return {c.id: c for c in self.clusters}

    def cluster(self, cluster_id: str) -> Cluster:
        """The cluster with this id; `ValidationError` naming it when there is none."""
        found = self._by_id.get(cluster_id)
        if found is None:
            raise ValidationError(f"unknown cluster {show(cluster_id)}"
                                  + did_you_mean(str(cluster_id), self.ids))
        return found

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group named by some cluster, in first-seen order."""
        seen: dict[str, None] = {}
        for c in self.clusters:
            for g in c.groups:
                seen.setdefault(g)
        return tuple(seen)

    def error(self, dotted: str, message: str) -> ConfigError:
        """A `ConfigError` in this file's format, for checks made after loading
        (the simulator validates `sim` blocks with it)."""
        line = self.lines.get(dotted)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {dotted}: {message}")
