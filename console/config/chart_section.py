"""The Helm keys of the `app` section: `chart` (the alternative to `manifests`),
`chart_version`, `chart_registry`, `release`, `chart_keys`, `helm_storage` and
`helm_timeout`.

A chart is a directory (relative to the fleet file) or an `oci://` reference, which then
needs a pinned `chart_version` and may name its registry's login and TLS in
`chart_registry`. The other keys only make sense with a chart; given without one they
are an error rather than silently ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from console.config.checks import (Checker, did_you_mean, is_loopback_host, or_empty,
                                   resolve_path)
from console.config.model import ChartConfig, ChartRegistryConfig
from console.config.yaml_reader import Path_
from console.names import show

CHART_KEYS = ("chart", "chart_version", "chart_registry", "release", "chart_keys",
              "helm_storage", "helm_timeout")
_REGISTRY_KEYS = ("username_env", "password_env", "vault", "ca_file", "plain_http")
HELM_STORAGES = ("secret", "configmap")
# Helm's own rule for release names: a DNS subdomain of at most 53 characters.
_RELEASE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_RELEASE_NAME = 53
# A `--set` key path: names joined by dots (no commas, `=` or brackets: one plain key).
_SET_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")
_CHART_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,127}")


def chart_section(ck: Checker, raw: dict[str, Any], app_name: str) -> ChartConfig | None:
    """The chart settings of a checked `app` mapping, or None when it ships manifests."""
    p: Path_ = ("app",)
    if raw.get("chart") is None:
        extra = [k for k in CHART_KEYS if k != "chart" and raw.get(k) is not None]
        if extra:
            raise ck.fail((*p, extra[0]), "only used with app.chart (the app ships "
                          "app.manifests otherwise)", at_key=True)
        return None
    if raw.get("manifests") is not None:
        raise ck.fail((*p, "chart"), "give app.manifests or app.chart, not both (a chart "
                      "replaces the manifest templates)", at_key=True)
    text = ck.text(raw["chart"], (*p, "chart"), what="a chart directory or an oci:// reference")
    version = ck.string(raw.get("chart_version"), (*p, "chart_version"))
    if version is not None and not _CHART_VERSION.fullmatch(version):
        raise ck.fail((*p, "chart_version"), f"{show(version)} is not a chart version")
    if text.startswith("oci://"):
        if version is None:
            raise ck.fail((*p, "chart"), "an oci:// chart needs app.chart_version (a pinned "
                          "version: every cluster gets the same chart)")
        chart = text
    elif "://" in text:
        raise ck.fail((*p, "chart"), f"{show(text)}: a chart is a directory beside the fleet "
                      "file or an oci:// reference")
    else:
        if version is not None:
            raise ck.fail((*p, "chart_version"), "only for an oci:// chart (a chart "
                          "directory has its version in Chart.yaml)", at_key=True)
        if raw.get("chart_registry") is not None:
            raise ck.fail((*p, "chart_registry"), "only for an oci:// chart (a chart "
                          "directory is read from disk)", at_key=True)
        chart = str(resolve_path(text, ck.base))
    release = ck.string(raw.get("release"), (*p, "release")) or app_name
    if len(release) > MAX_RELEASE_NAME or not _RELEASE.fullmatch(release):
        raise ck.fail((*p, "release"), f"{show(release)} is not a Helm release name "
                      f"(lower-case letters, digits, '-' and '.', at most {MAX_RELEASE_NAME})")
    kp: Path_ = (*p, "chart_keys")
    keys = ck.mapping(or_empty(raw.get("chart_keys")), kp, ("tag", "cluster", "repository",
                                                          "digest"))
    tag_key = _set_key(ck, keys.get("tag"), (*kp, "tag"), "image.tag")
    cluster_key = _set_key(ck, keys.get("cluster"), (*kp, "cluster"), "cluster")
    repository_key = (None if "repository" in keys and keys["repository"] is None else
                      _set_key(ck, keys.get("repository"), (*kp, "repository"),
                               "image.repository"))
    digest_key = _set_key(ck, keys.get("digest"), (*kp, "digest"), "image.digest")
    storage = ck.string(raw.get("helm_storage"), (*p, "helm_storage"), "secret") or "secret"
    if storage not in HELM_STORAGES:
        raise ck.fail((*p, "helm_storage"), f"unknown storage {show(storage)}"
                      + did_you_mean(storage, HELM_STORAGES)
                      + f"; one of {', '.join(HELM_STORAGES)}")
    timeout = ck.duration(raw.get("helm_timeout"), (*p, "helm_timeout"), 120.0)
    registry = (_chart_registry(ck, raw["chart_registry"], chart)
                if raw.get("chart_registry") is not None else None)
    if not text.startswith("oci://"):
        _check_chart_path(ck, Path(chart))
    return ChartConfig(chart=chart, release=release, version=version, tag_key=tag_key,
                       cluster_key=cluster_key, repository_key=repository_key,
                       digest_key=digest_key, storage=storage, timeout=timeout,
                       registry=registry)


def _check_chart_path(ck: Checker, chart: Path) -> None:
    """A local chart is there when the fleet file is loaded: a directory with a
    Chart.yaml (or a packaged chart file, which helm reads as it is)."""
    if not chart.exists():
        raise ck.fail(("app", "chart"), f"chart directory {chart} does not exist (a path "
                      "relative to the fleet file, or an oci:// reference)")
    if chart.is_dir() and not (chart / "Chart.yaml").is_file():
        raise ck.fail(("app", "chart"), f"{chart} has no Chart.yaml: not a Helm chart "
                      "directory")


def chart_host(chart: str) -> str:
    """The registry host (with port) of an `oci://` chart reference."""
    return chart.removeprefix("oci://").split("/", 1)[0]


def _chart_registry(ck: Checker, value: Any, chart: str) -> ChartRegistryConfig:
    """`app.chart_registry`: the login (env variables or Vault, never the password itself)
    and TLS of an oci:// chart's registry.

    Plain HTTP is only what the file says (`plain_http: true` for a loopback registry, or
    the registry's HOST[:PORT] for another), and a login never goes over plain HTTP to
    another machine: the password would cross the network in clear.
    """
    p: Path_ = ("app", "chart_registry")
    raw = ck.mapping(value, p, _REGISTRY_KEYS)
    user_env = ck.env_name(raw.get("username_env"), (*p, "username_env"))
    pass_env = ck.env_name(raw.get("password_env"), (*p, "password_env"))
    vault = ck.string(raw.get("vault"), (*p, "vault"), what="a Vault KV v2 path")
    if (user_env is None) != (pass_env is None):
        missing = "password_env" if pass_env is None else "username_env"
        raise ck.fail(p, f"give username_env and password_env together ({missing} is "
                      "missing)")
    if vault is not None and user_env is not None:
        raise ck.fail(p, "give username_env/password_env or vault, not both")
    host = chart_host(chart)
    plain = raw.get("plain_http")
    plain_http = False
    if plain is True:
        if not is_loopback_host(host):
            raise ck.fail((*p, "plain_http"), f"true applies to a loopback registry only, "
                          f"and the chart's registry is {host}: name the host to allow "
                          f"plain HTTP there (plain_http: {host})")
        plain_http = True
    elif plain not in (None, False):
        text = ck.text(plain, (*p, "plain_http"), what="true, false or the chart's "
                       "registry host (HOST[:PORT])")
        if text != host:
            raise ck.fail((*p, "plain_http"), f"{show(text)} is not the chart's registry "
                          f"host ({host})")
        if user_env or vault:
            raise ck.fail((*p, "plain_http"), f"a login to {host} over plain HTTP would "
                          "send the password in clear: use TLS (ca_file) for a registry "
                          "that needs a login")
        plain_http = True
    ca_file = ck.file_path(raw.get("ca_file"), (*p, "ca_file"))
    if ca_file is not None and plain_http:
        raise ck.fail((*p, "ca_file"), "plain_http has no TLS to verify: give one of "
                      "ca_file and plain_http")
    return ChartRegistryConfig(username_env=user_env, password_env=pass_env, vault=vault,
                               ca_file=ca_file, plain_http=plain_http)


def _set_key(ck: Checker, value: Any, path: Path_, default: str) -> str:
    key = ck.string(value, path, default, what="a value key such as image.tag") or default
    if not _SET_KEY.fullmatch(key):
        raise ck.fail(path, f"{show(key)} is not a value key (names joined by dots, "
                      "e.g. image.tag)")
    return key
