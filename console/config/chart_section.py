"""The Helm keys of the `app` section: `chart` (the alternative to `manifests`),
`chart_version`, `release`, `chart_keys`, `helm_storage` and `helm_timeout`.

A chart is a directory (relative to the fleet file) or an `oci://` reference, which then
needs a pinned `chart_version`. The other keys only make sense with a chart; given
without one they are an error rather than silently ignored.
"""

from __future__ import annotations

import re
from typing import Any

from console.config.checks import Checker, did_you_mean, or_empty, resolve_path
from console.config.model import ChartConfig
from console.config.yaml_reader import Path_
from console.names import show

CHART_KEYS = ("chart", "chart_version", "release", "chart_keys", "helm_storage",
              "helm_timeout")
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
    return ChartConfig(chart=chart, release=release, version=version, tag_key=tag_key,
                       cluster_key=cluster_key, repository_key=repository_key,
                       digest_key=digest_key, storage=storage, timeout=timeout)


def _set_key(ck: Checker, value: Any, path: Path_, default: str) -> str:
    key = ck.string(value, path, default, what="a value key such as image.tag") or default
    if not _SET_KEY.fullmatch(key):
        raise ck.fail(path, f"{show(key)} is not a value key (names joined by dots, "
                      "e.g. image.tag)")
    return key
