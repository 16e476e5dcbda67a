"""The fleet model (`clusters.yaml`) and its loader.

`load(path)` reads the fleet file and returns a frozen `FleetConfig`: the app, the
clusters with their credentials source and merged values, the named strategies, the
Vault settings and the simulator's free-form `sim` blocks. Every mistake in the file
is a `ConfigError` that names the file, the 1-based line and the dotted field path,
e.g. `clusters.yaml:14: clusters[2].groups: expected a list of names, got 'prd'`.

The YAML is composed into a node tree first (which keeps line numbers) and converted
here, not by PyYAML's constructor: that lets us refuse duplicate keys, count alias
expansions (a "billion laughs" document is refused, not expanded) and keep mapping
keys as written (`on:` stays the string "on", not YAML 1.1's `True`).
The full reference of the keys is docs/config.md.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from console.errors import ConfigError, ValidationError
from console.names import show, validate_dns_label

# Limits that keep a hostile or broken file from hanging the console.
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_ALIASES = 1000
MAX_NODES = 200_000
MAX_DEPTH = 64

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

Path_ = tuple[str | int, ...]


# --------------------------------------------------------------------------- model


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
    insecure: bool = False
    username_env: str | None = None
    password_env: str | None = None
    auth_file: Path | None = None
    timeout: float = 10.0
    vault: str | None = None  # KV v2 path holding `username` and `password`


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

    def image_ref(self, tag: str) -> str:
        """`repository:tag`, the image a release of `tag` runs."""
        return f"{self.image}:{tag}"


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
    allow_exec: bool = False


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

    def line_of(self, dotted: str) -> int | None:
        """The 1-based line of a field (`"clusters[2].sim"`), if it was in the file."""
        return self.lines.get(dotted)

    def error(self, dotted: str, message: str) -> ConfigError:
        """A `ConfigError` in this file's format, for checks made after loading
        (the simulator validates `sim` blocks with it)."""
        line = self.lines.get(dotted)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {dotted}: {message}")


# --------------------------------------------------------------------------- YAML


class _TooComplex(Exception):
    """The document has more aliases or nodes than a fleet file ever needs."""


# libyaml's parser when PyYAML has it (about 10x faster); the tree is converted below.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Budget:
    """What one YAML stream may cost to expand: values and alias uses, all documents."""

    def __init__(self) -> None:
        self.nodes = 0
        self.aliases = 0
        self.seen: set[int] = set()  # ids of nodes already expanded: a revisit is an alias

    def visit(self, node: yaml.Node, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise _TooComplex(f"more than {MAX_NODES} values or nesting deeper than "
                              f"{MAX_DEPTH} (after expanding aliases)")
        if id(node) in self.seen:
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooComplex(f"more than {MAX_ALIASES} aliases")
        else:
            self.seen.add(id(node))


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Converter:
    """Turns a composed node tree into plain data, recording the line of every path."""

    def __init__(self, source: str, budget: _Budget) -> None:
        self.source = source
        self.budget = budget
        self.lines: dict[Path_, int] = {}  # path -> line of the value
        self.key_lines: dict[Path_, int] = {}  # path -> line of its key
        self.quoted: set[Path_] = set()  # paths of quoted scalars ("..." or '...')
        self._scalars = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{node.start_mark.line + 1}: {message}")

    def convert(self, node: yaml.Node, path: Path_, depth: int = 0) -> Any:
        self.budget.visit(node, depth)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), depth + 1)
                    for i, item in enumerate(node.value)]
        if node.style in ("'", '"'):
            self.quoted.add(path)
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "cannot read this value"
            raise self.fail(node, f"{_dotted(path) or 'value'}: {problem}") from None
        except Exception:  # only this one scalar's construction
            # PyYAML's scalar constructors raise assorted built-in errors for malformed
            # values: `2024-13-45` resolves as a timestamp, `!!int ` is an IndexError.
            raise self.fail(node, f"{_dotted(path) or 'value'}: {show(node.value)} is not "
                            f"a valid {node.tag.rsplit(':', 1)[-1]} (quote it to keep a "
                            "string)") from None

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node):
                    for k, v in self._mapping(source, path, depth + 1).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"{_dotted(path) or 'top level'}: a key must be a "
                                "plain name, not a list or mapping")
            # The key as written: `on`, `yes`, `1` stay strings (YAML 1.1 would
            # turn `on:` into True).
            key = key_node.value
            if key in out:
                first = self.key_lines[(*path, key)]
                raise self.fail(key_node, f"{_dotted((*path, key))}: duplicate key "
                                f"(first at line {first})")
            self.key_lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.convert(value_node, (*path, key), depth + 1)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(
                isinstance(n, yaml.MappingNode) for n in node.value):
            return list(node.value)
        raise self.fail(node, "'<<' merges a mapping or a list of mappings")


def read_text(path: Path, source: str, what: str = "fleet file") -> str:
    """A YAML file's text; ConfigError for a missing, unreadable or oversized file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{source}: file too large for a {what} "
                              f"(more than {MAX_FILE_BYTES // (1024 * 1024)} MiB)")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = (" (give the fleet file with --config or $RELEASE_CONSOLE_CONFIG)"
                if what == "fleet file" else "")
        raise ConfigError(f"{source}: no such file{hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class YamlDocument:
    """One parsed YAML document: plain data, and the 1-based line of every path in it."""

    data: Any
    lines: Mapping[Path_, int]  # path -> line of the value
    key_lines: Mapping[Path_, int]  # path -> line of its key
    quoted: frozenset[Path_] = frozenset()  # paths of quoted scalars

    def line(self, path: Path_) -> int:
        """The line of `path`, else of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


def parse_yaml(text: str, source: str) -> list[YamlDocument]:
    """Every document of a YAML stream, safely: duplicate keys, too many aliases or
    nodes (alias bombs) and syntax errors are ConfigErrors with the line. Empty
    documents are left out. Mapping keys stay as written (`on` is not `True`)."""
    loader = _LOADER(text)
    docs: list[YamlDocument] = []
    budget = _Budget()
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            converter = _Converter(source, budget)
            data = converter.convert(node, ())
            if data is not None:
                docs.append(YamlDocument(data, converter.lines, converter.key_lines,
                                         frozenset(converter.quoted)))
    except _TooComplex as exc:
        raise ConfigError(f"{source}: refused: the document is too complex ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        if context and getattr(exc, "problem", None):
            problem = f"{context}, {problem}"
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return docs


# --------------------------------------------------------------------------- checks


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def did_you_mean(word: str, choices: Any) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return show(value)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMAGE_REPO = re.compile(
    r"(?:(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)")


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `90s`, `10m`, `1h`, `1h30m`, `500ms`; ValueError if not one."""
    if isinstance(value, bool):
        raise ValueError("a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or pos == 0:
                raise ValueError("a duration")
    else:
        raise ValueError("a duration")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("a positive duration")
    return seconds


def parse_failure_budget(value: Any) -> str:
    """Normalise a failure budget: a whole number >= 0 (`"2"`) or a percentage
    (`"10%"`, 0-100). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        if value < 0:
            raise ValueError
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return str(int(text))
        m = _PERCENT.fullmatch(text)
        if m and 0 <= float(m.group(1)) <= 100:
            number = float(m.group(1))
            return f"{int(number) if number.is_integer() else number}%"
    raise ValueError


def failure_budget_count(budget: str | None, total: int) -> int:
    """How many failures a budget allows among `total` clusters (percent rounds down)."""
    if budget is None:
        return 0
    if budget.endswith("%"):
        return int(float(budget[:-1]) * total // 100)
    return int(budget)


class _Checker:
    """Reads the converted data with typed accessors that fail with file:line: path."""

    def __init__(self, doc: YamlDocument, source: str, base: Path) -> None:
        self.conv = doc
        self.source = source
        self.base = base

    def fail(self, path: Path_, message: str, *, at_key: bool = False) -> ConfigError:
        line = (self.conv.key_lines.get(path) if at_key else None) or self.conv.line(path)
        where = f"{self.source}:{line}" if line else self.source
        name = _dotted(path) or "top level"
        return ConfigError(f"{where}: {name}: {message}")

    def mapping(self, value: Any, path: Path_, allowed: tuple[str, ...],
                required: tuple[str, ...] = (), what: str = "a mapping") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected {what}, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), "unknown key" + did_you_mean(key, allowed)
                                + f"; allowed: {', '.join(allowed)}", at_key=True)
        for key in required:
            if value.get(key) is None:
                raise self.fail(path, f"missing required key {key!r}")
        return value

    def free_mapping(self, value: Any, path: Path_) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        return value

    def string(self, value: Any, path: Path_, default: str | None = None,
               what: str = "a string") -> str | None:
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected {what}, got {_kind(value)}")
        return value

    def text(self, value: Any, path: Path_, what: str = "a string") -> str:
        """A required non-empty string."""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected {what}, got {_kind(value)}")
        return value

    def boolean(self, value: Any, path: Path_, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def integer(self, value: Any, path: Path_, default: int | None, minimum: int,
                maximum: int | None = None) -> int | None:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(path, f"expected a whole number {bound}, got {_kind(value)}")
        return value

    def duration(self, value: Any, path: Path_, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError:
            raise self.fail(path, "expected a duration such as 90s, 10m, 1h or plain "
                            f"seconds, got {_kind(value)}") from None

    def names(self, value: Any, path: Path_, what: str = "a list of names") -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"expected {what}, got {_kind(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail((*path, i), f"expected a name, got {_kind(item)}")
        return tuple(value)

    def dns_label(self, value: Any, path: Path_) -> str:
        try:
            return validate_dns_label(value, field="name")
        except ValidationError as exc:
            raise self.fail(path, str(exc).removeprefix("name: ")) from None

    def env_name(self, value: Any, path: Path_, default: str | None = None) -> str | None:
        text = self.string(value, path, default, what="an environment variable name")
        if text is not None and not _ENV_NAME.fullmatch(text):
            raise self.fail(path, f"{show(text)} is not an environment variable name")
        return text

    def file_path(self, value: Any, path: Path_) -> Path | None:
        text = self.string(value, path, what="a path")
        if text is None:
            return None
        return resolve_path(text, self.base)


def _or_empty(value: Any) -> Any:
    """An absent (null) section reads as an empty mapping; anything else is checked."""
    return {} if value is None else value


def resolve_path(text: str, base: Path) -> Path:
    """`~` expanded; a relative path taken from `base` (the fleet file's directory)."""
    p = Path(text).expanduser()
    return p if p.is_absolute() else Path(os.path.normpath(base / p))


# --------------------------------------------------------------------------- sections


_TOP_KEYS = ("app", "defaults", "vault", "clusters", "strategies", "order", "sim")
_APP_KEYS = ("name", "image", "manifests", "namespace", "rollout_timeout", "history",
             "notify", "registry", "build")


def _app(ck: _Checker, raw: Any) -> App:
    p: Path_ = ("app",)
    raw = ck.mapping(raw, p, _APP_KEYS, required=("name", "image"))
    name = ck.dns_label(raw["name"], (*p, "name"))
    image = ck.text(raw["image"], (*p, "image"))
    if "@" in image or ":" in image.rsplit("/", 1)[-1]:
        raise ck.fail((*p, "image"), f"{show(image)}: give the repository without a tag "
                      "or digest; the tag is chosen per release")
    if not _IMAGE_REPO.fullmatch(image):
        raise ck.fail((*p, "image"), f"{show(image)} is not an image repository "
                      "(registry host and lower-case path, e.g. registry.example.com/apps/web)")
    manifests = ck.file_path(raw.get("manifests"), (*p, "manifests")) or resolve_path(
        f"deploy/{name}", ck.base)
    rule = ck.text(raw.get("namespace", "{cluster}"), (*p, "namespace"))
    _check_namespace_rule(ck, rule, (*p, "namespace"))
    timeout = ck.duration(raw.get("rollout_timeout"), (*p, "rollout_timeout"),
                          DEFAULT_ROLLOUT_TIMEOUT)

    hp: Path_ = (*p, "history")
    hraw = ck.mapping(_or_empty(raw.get("history")), hp, ("path", "remote"))
    history = HistoryConfig(
        path=ck.file_path(hraw.get("path"), (*hp, "path"))
        or resolve_path(DEFAULT_HISTORY_PATH, ck.base),
        remote=ck.string(hraw.get("remote"), (*hp, "remote")))

    build_p: Path_ = (*p, "build")
    braw = ck.mapping(_or_empty(raw.get("build")), build_p, ("command",))
    return App(name=name, image=image, manifests=manifests, namespace_rule=rule,
               rollout_timeout=timeout, history=history,
               notify=_notify(ck, raw.get("notify"), (*p, "notify")),
               registry=_registry(ck, raw.get("registry"), (*p, "registry")),
               build_command=ck.string(braw.get("command"), (*build_p, "command")))


def _check_namespace_rule(ck: _Checker, rule: str, path: Path_) -> None:
    # Only `{cluster}` is substituted; anything else in braces is a typo.
    for m in re.finditer(r"\{([^{}]*)\}", rule):
        if m.group(1) != "cluster":
            raise ck.fail(path, f"unknown placeholder {{{m.group(1)}}} in {show(rule)}; "
                          "only {cluster} is replaced")


def _notify(ck: _Checker, raw: Any, p: Path_) -> NotifyConfig:
    raw = ck.mapping(_or_empty(raw), p, ("on", "slack_webhook", "slack_webhook_env", "email",
                                         "timeout"))
    on = ck.names(raw.get("on", ["failure"]), (*p, "on"),
                  what="a list of events (failure, success, gate)")
    for i, event in enumerate(on):
        if event not in NOTIFY_EVENTS:
            raise ck.fail((*p, "on", i), f"unknown event {show(event)}"
                          + did_you_mean(event, NOTIFY_EVENTS)
                          + f"; one of {', '.join(NOTIFY_EVENTS)}")
    webhook = ck.string(raw.get("slack_webhook"), (*p, "slack_webhook"))
    if webhook is not None and not webhook.startswith(("https://", "http://")):
        raise ck.fail((*p, "slack_webhook"), "expected an http(s) URL")
    webhook_env = ck.env_name(raw.get("slack_webhook_env"), (*p, "slack_webhook_env"))
    if webhook is not None and webhook_env is not None:
        raise ck.fail(p, "give slack_webhook or slack_webhook_env, not both")
    email = None
    if raw.get("email") is not None:
        ep: Path_ = (*p, "email")
        eraw = ck.mapping(raw["email"], ep, ("to", "from", "host", "port", "starttls",
                                             "username_env", "password_env", "timeout"),
                          required=("to", "from", "host"))
        to = eraw["to"]
        to = (to,) if isinstance(to, str) else ck.names(to, (*ep, "to"),
                                                        what="a list of addresses")
        if not to:
            raise ck.fail((*ep, "to"), "expected at least one address")
        email = EmailConfig(
            to=tuple(to), sender=ck.text(eraw["from"], (*ep, "from")),
            host=ck.text(eraw["host"], (*ep, "host")),
            port=ck.integer(eraw.get("port"), (*ep, "port"), 587, 1, 65535) or 587,
            starttls=ck.boolean(eraw.get("starttls"), (*ep, "starttls"), True),
            username_env=ck.env_name(eraw.get("username_env"), (*ep, "username_env")),
            password_env=ck.env_name(eraw.get("password_env"), (*ep, "password_env")),
            timeout=ck.duration(eraw.get("timeout"), (*ep, "timeout"), 10.0))
    return NotifyConfig(on=on, slack_webhook=webhook, slack_webhook_env=webhook_env, email=email,
                        timeout=ck.duration(raw.get("timeout"), (*p, "timeout"), 10.0))


def _registry(ck: _Checker, raw: Any, p: Path_) -> RegistryConfig:
    raw = ck.mapping(_or_empty(raw), p, ("ca_file", "insecure", "username_env", "password_env",
                                    "auth_file", "timeout", "vault"))
    return RegistryConfig(
        ca_file=ck.file_path(raw.get("ca_file"), (*p, "ca_file")),
        insecure=ck.boolean(raw.get("insecure"), (*p, "insecure"), False),
        username_env=ck.env_name(raw.get("username_env"), (*p, "username_env")),
        password_env=ck.env_name(raw.get("password_env"), (*p, "password_env")),
        auth_file=ck.file_path(raw.get("auth_file"), (*p, "auth_file")),
        timeout=ck.duration(raw.get("timeout"), (*p, "timeout"), 10.0),
        vault=ck.string(raw.get("vault"), (*p, "vault")))


_VAULT_KEYS = ("addr", "namespace", "cacert", "path_pattern", "auth", "token_env",
               "role_id_env", "secret_id_env", "approle_mount", "timeout")


def _vault(ck: _Checker, raw: Any) -> VaultConfig:
    p: Path_ = ("vault",)
    raw = ck.mapping(_or_empty(raw), p, _VAULT_KEYS)
    addr = ck.string(raw.get("addr"), (*p, "addr"))
    if addr is not None and not addr.startswith(("https://", "http://")):
        raise ck.fail((*p, "addr"), f"expected an http(s) URL, got {show(addr)}")
    pattern = ck.string(raw.get("path_pattern"), (*p, "path_pattern"),
                        DEFAULT_VAULT_PATH_PATTERN) or DEFAULT_VAULT_PATH_PATTERN
    if "{cluster}" not in pattern or "/" not in pattern.strip("/"):
        raise ck.fail((*p, "path_pattern"), f"{show(pattern)}: expected a KV v2 path "
                      "with a mount and {cluster}, e.g. secret/kubeconfigs/{cluster}")
    _check_namespace_rule(ck, pattern, (*p, "path_pattern"))
    auth = ck.string(raw.get("auth"), (*p, "auth"), "token") or "token"
    if auth not in ("token", "approle"):
        raise ck.fail((*p, "auth"), f"expected token or approle, got {show(auth)}"
                      + did_you_mean(auth, ("token", "approle")))
    return VaultConfig(
        addr=addr, namespace=ck.string(raw.get("namespace"), (*p, "namespace")),
        cacert=ck.file_path(raw.get("cacert"), (*p, "cacert")), path_pattern=pattern,
        auth=auth,
        token_env=ck.env_name(raw.get("token_env"), (*p, "token_env"), "VAULT_TOKEN") or "",
        role_id_env=ck.env_name(raw.get("role_id_env"), (*p, "role_id_env"),
                                "VAULT_ROLE_ID") or "",
        secret_id_env=ck.env_name(raw.get("secret_id_env"), (*p, "secret_id_env"),
                                  "VAULT_SECRET_ID") or "",
        approle_mount=ck.string(raw.get("approle_mount"), (*p, "approle_mount"),
                                "approle") or "approle",
        timeout=ck.duration(raw.get("timeout"), (*p, "timeout"), 10.0))


def _defaults(ck: _Checker, raw: Any) -> dict[str, Any]:
    p: Path_ = ("defaults",)
    raw = ck.mapping(_or_empty(raw), p, ("values",))
    values = ck.free_mapping(raw.get("values"), (*p, "values"))
    _check_value_names(ck, values, (*p, "values"))
    return values


def _check_value_names(ck: _Checker, values: dict[str, Any], p: Path_) -> None:
    for key in values:
        if key in RESERVED_VALUE_NAMES:
            raise ck.fail((*p, key), f"{key!r} is filled by the console itself; choose "
                          "another name", at_key=True)
        if not _PLACEHOLDER_NAME.fullmatch(key):
            raise ck.fail((*p, key), f"{show(key)} cannot be used as ${{name}}: letters, "
                          "digits and '_', not starting with a digit", at_key=True)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings merge key by key, anything else
    (lists included) replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_CLUSTER_KEYS = ("id", "groups", "credentials", "namespace", "values", "production", "sim")
_CRED_KEYS = ("kubeconfig", "context", "env", "vault", "server", "ca_sha256", "allow_exec")


def _clusters(ck: _Checker, raw: Any, app: App, defaults: dict[str, Any],
              vault: VaultConfig | None) -> tuple[Cluster, ...]:
    p: Path_ = ("clusters",)
    if not isinstance(raw, list) or not raw:
        raise ck.fail(p, f"expected a non-empty list of clusters, got {_kind(raw)}")
    out: list[Cluster] = []
    first_line: dict[str, int] = {}
    for i, item in enumerate(raw):
        cp: Path_ = (*p, i)
        item = ck.mapping(item, cp, _CLUSTER_KEYS, required=("id",))
        cid = ck.dns_label(item["id"], (*cp, "id"))
        line = ck.conv.lines.get(cp, 0)
        if cid in first_line:
            raise ck.fail((*cp, "id"), f"duplicate cluster id {cid!r} (also at line "
                          f"{first_line[cid]})")
        if cid == REST:
            raise ck.fail((*cp, "id"), "'rest' is reserved for strategy waves")
        first_line[cid] = ck.conv.lines.get((*cp, "id"), line)
        groups = ck.names(item.get("groups"), (*cp, "groups"))
        for j, group in enumerate(groups):
            ck.dns_label(group, (*cp, "groups", j))
            if group == REST:
                raise ck.fail((*cp, "groups", j), "'rest' is reserved for strategy waves")
        rule = ck.text(item.get("namespace", app.namespace_rule), (*cp, "namespace"))
        _check_namespace_rule(ck, rule, (*cp, "namespace"))
        namespace = rule.replace("{cluster}", cid)
        ns_path = (*cp, "namespace") if "namespace" in item else ("app", "namespace")
        try:
            validate_dns_label(namespace, field="namespace")
        except ValidationError as exc:
            raise ck.fail(ns_path, f"for cluster {cid!r}: {exc}") from None
        values = ck.free_mapping(item.get("values"), (*cp, "values"))
        _check_value_names(ck, values, (*cp, "values"))
        production = ck.boolean(item.get("production"), (*cp, "production"),
                                any(g in PRODUCTION_GROUPS for g in groups))
        out.append(Cluster(
            id=cid, groups=groups,
            credentials=_credentials(ck, item.get("credentials"), (*cp, "credentials"),
                                     cid, vault),
            namespace=namespace, values=deep_merge(defaults, values),
            sim=ck.free_mapping(item.get("sim"), (*cp, "sim")), line=line,
            production=production))
    return tuple(out)


def _credentials(ck: _Checker, raw: Any, p: Path_, cid: str,
                 vault: VaultConfig | None) -> Credentials:
    raw = ck.mapping(_or_empty(raw), p, _CRED_KEYS)
    sources = [k for k in ("kubeconfig", "env", "vault")
               if raw.get(k) is not None and raw.get(k) is not False]
    if len(sources) > 1:
        raise ck.fail(p, f"give one credentials source, not {' and '.join(sources)}")
    vault_path: str | None = None
    v = raw.get("vault")
    if v is True:
        vault_path = (vault or VaultConfig()).path_for(cid)
    elif v is not None and v is not False:
        vault_path = ck.text(v, (*p, "vault"), what="a KV v2 path or true")
        if "/" not in vault_path.strip("/"):
            raise ck.fail((*p, "vault"), f"{show(vault_path)}: expected a KV v2 path "
                          "with its mount, e.g. secret/kubeconfigs/prod-eu")
        vault_path = vault_path.strip("/")
    server = ck.string(raw.get("server"), (*p, "server"))
    if server is not None and not server.startswith("https://"):
        raise ck.fail((*p, "server"), f"expected an https:// URL, got {show(server)}")
    fingerprint = ck.string(raw.get("ca_sha256"), (*p, "ca_sha256"))
    if fingerprint is not None:
        hexed = fingerprint.lower().removeprefix("sha256:").replace(":", "")
        if not re.fullmatch(r"[0-9a-f]{64}", hexed):
            raise ck.fail((*p, "ca_sha256"), "expected a SHA-256 fingerprint (64 hex "
                          f"digits, colons allowed), got {show(fingerprint)}")
        fingerprint = hexed
    return Credentials(
        kubeconfig=ck.file_path(raw.get("kubeconfig"), (*p, "kubeconfig")),
        context=ck.string(raw.get("context"), (*p, "context")),
        env=ck.env_name(raw.get("env"), (*p, "env")),
        vault=vault_path, server=server, ca_sha256=fingerprint,
        allow_exec=ck.boolean(raw.get("allow_exec"), (*p, "allow_exec"), False))


_STRATEGY_KEYS = ("waves", "gates", "max_failures", "max_parallel")


def is_glob(entry: str) -> bool:
    """True when a selector term or wave entry is a shell-style pattern."""
    return any(ch in entry for ch in "*?[")


def _strategies(ck: _Checker, raw: Any, clusters: tuple[Cluster, ...]) -> dict[str, Strategy]:
    p: Path_ = ("strategies",)
    raw = ck.free_mapping(raw, p)
    ids = [c.id for c in clusters]
    groups = {g for c in clusters for g in c.groups}
    out: dict[str, Strategy] = {}
    for name, sraw in raw.items():
        sp: Path_ = (*p, name)
        if name in BUILTIN_STRATEGIES:
            raise ck.fail(sp, f"{name!r} is a built-in strategy; choose another name",
                          at_key=True)
        ck.dns_label(name, sp)
        sraw = ck.mapping(sraw, sp, _STRATEGY_KEYS, required=("waves",))
        wp: Path_ = (*sp, "waves")
        waves_raw = sraw["waves"]
        if not isinstance(waves_raw, list) or not waves_raw:
            raise ck.fail(wp, f"expected a list of waves, got {_kind(waves_raw)}")
        waves: list[tuple[str, ...]] = []
        for w, wave in enumerate(waves_raw):
            # A wave is a list of entries; a single entry may stand alone (`- rest`).
            entries = (wave,) if isinstance(wave, str) else ck.names(
                wave, (*wp, w), what="a list of cluster ids, groups, globs, N% or rest")
            if not entries:
                raise ck.fail((*wp, w), "empty wave")
            for e, entry in enumerate(entries):
                ep = (*wp, w) if isinstance(wave, str) else (*wp, w, e)
                _check_wave_entry(ck, entry, ep, ids, groups)
            waves.append(entries)
        budget = sraw.get("max_failures")
        if budget is not None:
            try:
                budget = parse_failure_budget(budget)
            except ValueError:
                raise ck.fail((*sp, "max_failures"), "expected a number of clusters or a "
                              f"percentage (0-100%), got {_kind(budget)}") from None
        out[name] = Strategy(
            name=name, waves=tuple(waves),
            gates=ck.boolean(sraw.get("gates"), (*sp, "gates"), False),
            max_failures=budget,
            max_parallel=ck.integer(sraw.get("max_parallel"), (*sp, "max_parallel"), None, 1),
            line=ck.conv.key_lines.get(sp, 0))
    return out


def _check_wave_entry(ck: _Checker, entry: str, p: Path_, ids: list[str],
                      groups: set[str]) -> None:
    if entry == REST:
        return
    m = _PERCENT.fullmatch(entry)
    if m:
        if not 0 < float(m.group(1)) <= 100:
            raise ck.fail(p, f"{entry!r}: a share of the remaining targets is 1-100%")
        return
    if entry.endswith("%"):
        raise ck.fail(p, f"{show(entry)} is not a percentage such as 10%")
    if is_glob(entry):
        if not fnmatch.filter(ids, entry):
            raise ck.fail(p, f"{entry!r} matches no cluster")
        return
    if entry not in ids and entry not in groups:
        raise ck.fail(p, f"unknown cluster or group {entry!r}"
                      + did_you_mean(entry, [*ids, *sorted(groups)]))


def _order(ck: _Checker, raw: Any, ids: tuple[str, ...]) -> tuple[str, ...]:
    p: Path_ = ("order",)
    order = ck.names(raw, p, what="a list of cluster ids")
    seen: set[str] = set()
    for i, cid in enumerate(order):
        if cid not in ids:
            raise ck.fail((*p, i), f"unknown cluster {cid!r}" + did_you_mean(cid, ids))
        if cid in seen:
            raise ck.fail((*p, i), f"{cid!r} is listed twice")
        seen.add(cid)
    return order


def _flat_lines(conv: YamlDocument) -> dict[str, int]:
    out = {_dotted(path): line for path, line in conv.lines.items() if path}
    for path, line in conv.key_lines.items():
        out.setdefault(_dotted(path), line)
    return out


# --------------------------------------------------------------------------- load


def load(path: str | Path) -> FleetConfig:
    """Load and validate a fleet file; `ConfigError("file:line: field: ...")` if wrong."""
    source = str(path)
    abs_path = Path(path).expanduser().absolute()
    docs = parse_yaml(read_text(abs_path, source), source)
    if not docs:
        raise ConfigError(f"{source}:1: the file is empty; expected a mapping with "
                          "`app` and `clusters`")
    if len(docs) > 1:
        raise ConfigError(f"{source}:{docs[1].line(())}: a second YAML document; the fleet "
                          "file is one document")
    conv = docs[0]
    data = conv.data
    ck = _Checker(conv, source, abs_path.parent)
    if not isinstance(data, dict):
        raise ck.fail((), f"expected a mapping with `app` and `clusters`, got {_kind(data)}")
    ck.mapping(data, (), _TOP_KEYS, required=("app", "clusters"))
    app = _app(ck, data["app"])
    defaults = _defaults(ck, data.get("defaults"))
    clusters_raw = data["clusters"]
    uses_vault = isinstance(clusters_raw, list) and any(
        isinstance(c, dict) and isinstance(c.get("credentials"), dict)
        and c["credentials"].get("vault") not in (None, False) for c in clusters_raw)
    vault = _vault(ck, data.get("vault")) if data.get("vault") is not None or uses_vault \
        else None
    clusters = _clusters(ck, clusters_raw, app, defaults, vault)
    strategies = _strategies(ck, data.get("strategies"), clusters)
    ids = tuple(c.id for c in clusters)
    return FleetConfig(
        path=abs_path, app=app, clusters=clusters, strategies=strategies, vault=vault,
        sim=ck.free_mapping(data.get("sim"), ("sim",)), raw=data,
        order=_order(ck, data.get("order"), ids), defaults=defaults, source=source,
        lines=_flat_lines(conv))
