"""Helm's release history, read straight from its storage in the cluster.

Helm 3 keeps one object per release revision in the release's namespace: a Secret
(`HELM_DRIVER=secret`, the default; type `helm.sh/release.v1`) or a ConfigMap
(`HELM_DRIVER=configmap`), named `sh.helm.release.v1.<release>.v<revision>` and labelled
`owner=helm,name=<release>,version=<revision>,status=<status>`. Its `release` key holds
the release as gzip'd JSON in base64 (a Secret's data is base64 once more on the wire).

Reading the storage through the cluster's own client costs one list call, where `helm
history` would cost a process per cluster: `status` of a large fleet stays cheap. Only
Helm itself writes there (upgrade, rollback, uninstall run the helm binary).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from console.kube.client import ClusterError, KubeClient

# The most a decoded release may take: a chart of a few MiB, never more than a Secret holds.
MAX_RELEASE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class HelmRevision:
    """One revision of a Helm release, as Helm stored it."""

    number: int
    status: str                     # deployed, superseded, failed, pending-upgrade, ...
    chart: str                      # chart name
    chart_version: str
    app_version: str
    description: str
    updated: str                    # info.last_deployed
    deployment: Mapping[str, Any] | None = None   # the app's Deployment in the manifest
    values: Mapping[str, Any] = field(default_factory=dict)  # the user-supplied values

    @property
    def template(self) -> Mapping[str, Any] | None:
        """The Deployment's pod template as rendered by this revision."""
        if not self.deployment:
            return None
        return (self.deployment.get("spec") or {}).get("template")


def storage_path(storage: str, namespace: str) -> str:
    """The API path of the release storage objects in `namespace`."""
    plural = "secrets" if storage == "secret" else "configmaps"
    return f"/api/v1/namespaces/{namespace}/{plural}"


def read_history(client: KubeClient, storage: str, namespace: str, release: str, app: str,
                 timeout: float | None = None) -> list[HelmRevision]:
    """Every stored revision of `release`, oldest first (empty when never installed).

    `app` names the Deployment looked for in each revision's manifest. Raises
    `ClusterError` when the storage cannot be listed or a revision cannot be decoded.
    """
    listing = client.request("GET", storage_path(storage, namespace),
                             {"labelSelector": f"owner=helm,name={release}"}, timeout=timeout)
    out = []
    for item in listing.get("items") or []:
        raw = (item.get("data") or {}).get("release")
        if not isinstance(raw, str):
            continue
        name = (item.get("metadata") or {}).get("name", "?")
        try:
            text = base64.b64decode(raw, validate=True) if storage == "secret" else raw.encode()
            out.append(revision_from(decode_release(text), app))
        except (ValueError, binascii.Error, OSError, yaml.YAMLError) as exc:
            raise ClusterError(client.cluster, f"Helm release record {name} is unreadable "
                               f"({type(exc).__name__})") from None
    out.sort(key=lambda r: r.number)
    return out


def decode_release(data: bytes) -> dict[str, Any]:
    """A release from the bytes Helm stored (base64 of gzip'd JSON; plain JSON accepted)."""
    raw = base64.b64decode(data, validate=True)
    if raw[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as handle:
            raw = handle.read(MAX_RELEASE_BYTES + 1)
        if len(raw) > MAX_RELEASE_BYTES:
            raise ValueError("release record larger than 8 MiB")
    release = json.loads(raw)
    if not isinstance(release, dict):
        raise ValueError("release record is not an object")
    return release


def revision_from(release: Mapping[str, Any], app: str) -> HelmRevision:
    """A `HelmRevision` from a decoded release; its Deployment is the one named `app`."""
    info = release.get("info") or {}
    meta = (release.get("chart") or {}).get("metadata") or {}
    return HelmRevision(
        number=int(release.get("version") or 0), status=str(info.get("status") or ""),
        chart=str(meta.get("name") or ""), chart_version=str(meta.get("version") or ""),
        app_version=str(meta.get("appVersion") or ""),
        description=str(info.get("description") or ""),
        updated=str(info.get("last_deployed") or ""),
        deployment=find_deployment(str(release.get("manifest") or ""), app),
        values=dict(release.get("config") or {}))


def find_deployment(manifest: str, app: str) -> dict[str, Any] | None:
    """The Deployment named `app` in a rendered multi-document manifest, or None."""
    for doc in yaml.safe_load_all(manifest):
        if isinstance(doc, dict) and doc.get("kind") == "Deployment" and \
                (doc.get("metadata") or {}).get("name") == app:
            return doc
    return None


def latest(history: list[HelmRevision]) -> HelmRevision | None:
    """The revision Helm considers current: the newest deployed, else the newest at all."""
    for revision in reversed(history):
        if revision.status == "deployed":
            return revision
    return history[-1] if history else None



def pending(history: list[HelmRevision]) -> HelmRevision | None:
    """The newest revision when Helm left it pending (`pending-install`, `-upgrade`,
    `-rollback`): a helm killed mid-operation leaves it so, and Helm then refuses every
    other operation on the release ("another operation is in progress")."""
    if history and history[-1].status.startswith("pending-"):
        return history[-1]
    return None
