"""The fleet file's other sections: `defaults`, `vault`, `clusters` (with their
credentials), `strategies` and `order`."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from console.config.app_section import check_namespace_rule
from console.config.checks import (PERCENT, PLACEHOLDER_NAME, Checker, deep_merge,
                                   did_you_mean, is_glob, kind_of, or_empty,
                                   is_zero_duration, parse_failure_budget, parse_pace)
from console.config.model import (BUILTIN_STRATEGIES, DEFAULT_VAULT_PATH_PATTERN,
                                  PRODUCTION_GROUPS, REST, RESERVED_VALUE_NAMES, App,
                                  Cluster, Credentials, Strategy, VaultConfig)
from console.config.yaml_reader import Path_
from console.errors import ValidationError
from console.names import show, validate_dns_label

_VAULT_KEYS = ("addr", "namespace", "cacert", "path_pattern", "auth", "token_env",
               "role_id_env", "secret_id_env", "approle_mount", "timeout")


def vault_section(ck: Checker, raw: Any) -> VaultConfig:
    p: Path_ = ("vault",)
    raw = ck.mapping(or_empty(raw), p, _VAULT_KEYS)
    addr = ck.string(raw.get("addr"), (*p, "addr"))
    if addr is not None and not addr.startswith(("https://", "http://")):
        raise ck.fail((*p, "addr"), f"expected an http(s) URL, got {show(addr)}")
    pattern = ck.string(raw.get("path_pattern"), (*p, "path_pattern"),
                        DEFAULT_VAULT_PATH_PATTERN) or DEFAULT_VAULT_PATH_PATTERN
    if "{cluster}" not in pattern or "/" not in pattern.strip("/"):
        raise ck.fail((*p, "path_pattern"), f"{show(pattern)}: expected a KV v2 path "
                      "with a mount and {cluster}, e.g. secret/kubeconfigs/{cluster}")
    check_namespace_rule(ck, pattern, (*p, "path_pattern"))
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


def defaults_section(ck: Checker, raw: Any) -> dict[str, Any]:
    p: Path_ = ("defaults",)
    raw = ck.mapping(or_empty(raw), p, ("values",))
    values = ck.free_mapping(raw.get("values"), (*p, "values"))
    check_value_names(ck, values, (*p, "values"))
    return values


def check_value_names(ck: Checker, values: dict[str, Any], p: Path_) -> None:
    for key in values:
        if key in RESERVED_VALUE_NAMES:
            raise ck.fail((*p, key), f"{key!r} is filled by the console itself; choose "
                          "another name", at_key=True)
        if not PLACEHOLDER_NAME.fullmatch(key):
            raise ck.fail((*p, key), f"{show(key)} cannot be used as ${{name}}: letters, "
                          "digits and '_', not starting with a digit", at_key=True)


_CLUSTER_KEYS = ("id", "groups", "credentials", "namespace", "values", "production", "sim")
_CRED_KEYS = ("kubeconfig", "context", "env", "vault", "server", "ca_sha256", "allow_exec",
              "allow_auth_provider", "allow_insecure_tls")


def clusters_section(ck: Checker, raw: Any, app: App, defaults: dict[str, Any],
              vault: VaultConfig | None) -> tuple[Cluster, ...]:
    p: Path_ = ("clusters",)
    if not isinstance(raw, list) or not raw:
        raise ck.fail(p, f"expected a non-empty list of clusters, got {kind_of(raw)}")
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
        check_namespace_rule(ck, rule, (*cp, "namespace"))
        namespace = rule.replace("{cluster}", cid)
        ns_path = (*cp, "namespace") if "namespace" in item else ("app", "namespace")
        try:
            validate_dns_label(namespace, field="namespace")
        except ValidationError as exc:
            raise ck.fail(ns_path, f"for cluster {cid!r}: {exc}") from None
        values = ck.free_mapping(item.get("values"), (*cp, "values"))
        check_value_names(ck, values, (*cp, "values"))
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


def _credentials(ck: Checker, raw: Any, p: Path_, cid: str,
                 vault: VaultConfig | None) -> Credentials:
    raw = ck.mapping(or_empty(raw), p, _CRED_KEYS)
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
        allow_exec=ck.boolean(raw.get("allow_exec"), (*p, "allow_exec"), False),
        allow_auth_provider=ck.boolean(raw.get("allow_auth_provider"),
                                       (*p, "allow_auth_provider"), False),
        allow_insecure_tls=ck.boolean(raw.get("allow_insecure_tls"), (*p, "allow_insecure_tls"),
                                      False))


_STRATEGY_KEYS = ("waves", "gates", "max_failures", "max_parallel", "approvals", "bake",
                  "max_starts", "on_failure")
ROLLBACK_SCOPES = ("cluster", "wave", "release")
_WAVE_KEYS = ("clusters", "bake")

def strategies_section(ck: Checker, raw: Any,
                       clusters: tuple[Cluster, ...]) -> dict[str, Strategy]:
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
            raise ck.fail(wp, f"expected a list of waves, got {kind_of(waves_raw)}")
        waves: list[tuple[str, ...]] = []
        bakes: list[float | None] = []
        for w, wave in enumerate(waves_raw):
            wpath: Path_ = (*wp, w)
            bake: float | None = None
            if isinstance(wave, dict):
                # `{clusters: [...], bake: 5m}`: a wave with its own bake time.
                wave = ck.mapping(wave, wpath, _WAVE_KEYS, required=("clusters",))
                bake = _bake(ck, wave.get("bake"), (*wpath, "bake"))
                wave, wpath = wave["clusters"], (*wpath, "clusters")
            # A wave is a list of entries; a single entry may stand alone (`- rest`).
            entries = (wave,) if isinstance(wave, str) else ck.names(
                wave, wpath, what="a list of cluster ids, groups, globs, N% or rest")
            if not entries:
                raise ck.fail(wpath, "empty wave")
            for e, entry in enumerate(entries):
                ep = wpath if isinstance(wave, str) else (*wpath, e)
                _check_wave_entry(ck, entry, ep, ids, groups)
            waves.append(entries)
            bakes.append(bake)
        budget = sraw.get("max_failures")
        if budget is not None:
            try:
                budget = parse_failure_budget(budget)
            except ValueError:
                raise ck.fail((*sp, "max_failures"), "expected a number of clusters or a "
                              f"percentage (0-100%), got {kind_of(budget)}") from None
        out[name] = Strategy(
            name=name, waves=tuple(waves),
            gates=ck.boolean(sraw.get("gates"), (*sp, "gates"), False),
            max_failures=budget,
            max_parallel=ck.integer(sraw.get("max_parallel"), (*sp, "max_parallel"), None, 1),
            line=ck.conv.key_lines.get(sp, 0),
            approvals=ck.integer(sraw.get("approvals"), (*sp, "approvals"), 1, 1) or 1,
            bake=_bake(ck, sraw.get("bake"), (*sp, "bake")) or 0.0,
            wave_bakes=tuple(bakes),
            max_starts=_pace(ck, sraw.get("max_starts"), (*sp, "max_starts")),
            on_failure=_scope(ck, sraw.get("on_failure"), (*sp, "on_failure")))
    return out


MAX_BAKE = 24 * 3600.0


def _scope(ck: Checker, value: Any, path: Path_) -> str:
    """`on_failure: cluster | wave | release` (default cluster)."""
    scope = ck.string(value, path, "cluster") or "cluster"
    if scope not in ROLLBACK_SCOPES:
        raise ck.fail(path, f"unknown rollback scope {show(scope)}"
                      + did_you_mean(scope, ROLLBACK_SCOPES)
                      + f"; one of {', '.join(ROLLBACK_SCOPES)}")
    return scope


def _pace(ck: Checker, value: Any, path: Path_) -> tuple[int, float] | None:
    """`max_starts: N/DURATION` (None when not given)."""
    if value is None:
        return None
    return ck.parsed(value, path, parse_pace, "N/DURATION such as 10/30s (at most N "
                     "clusters start in any DURATION; N and DURATION above 0)")


def _bake(ck: Checker, value: Any, path: Path_) -> float | None:
    """A bake time: a duration from 0 to 24h (None when not given)."""
    if value is None:
        return None
    if is_zero_duration(value):
        return 0.0
    seconds = ck.duration(value, path, 0.0)
    if not 0 <= seconds <= MAX_BAKE:
        raise ck.fail(path, f"a bake time is 0 to 24h, got {show(value)}")
    return seconds


def _check_wave_entry(ck: Checker, entry: str, p: Path_, ids: list[str],
                      groups: set[str]) -> None:
    if entry == REST:
        return
    m = PERCENT.fullmatch(entry)
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


def order_section(ck: Checker, raw: Any, ids: tuple[str, ...]) -> tuple[str, ...]:
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

