"""The files a local fleet writes for the console: DIR/<id>.yaml kubeconfigs, DIR/ca.crt and
DIR/clusters.yaml, the input fleet file rewritten to point at the local fleet.

Shared by `release-console sim` (SimFleet) and `release-console lab` (console.lab), so both
rewrite a fleet file the same way: each cluster's credentials point at its kubeconfig (a
`server` pin rewritten to the local URL, a `ca_sha256` pin to the local CA), `app.image`
moves to the demo registry, `app.registry.ca_file` is the local CA, relative paths become
absolute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import yaml


class LocalFleet(Protocol):
    """What a fleet offers for its files to be written (SimFleet and LabFleet)."""

    @property
    def ids(self) -> tuple[str, ...]: ...
    @property
    def ca_pem(self) -> bytes: ...
    @property
    def ca_sha256(self) -> str: ...
    @property
    def registry_host(self) -> str: ...
    def url(self, cluster_id: str) -> str: ...
    def kubeconfig(self, cluster_id: str) -> dict[str, Any]: ...


_MARKS = {
    "sim": "# Written by `release-console sim`: a simulated cluster of the local fleet.\n",
    "lab": "# Written by `release-console lab`: a real control plane of the local lab.\n",
}
_HEADERS = {
    "sim": "# The fleet, rewritten by `release-console sim` to run on the local fleet.\n",
    "lab": "# The fleet, rewritten by `release-console lab` to run on the local lab.\n",
}


class _KeysAsWritten(yaml.SafeLoader):
    """YAML loading that keeps mapping keys as written, as console.config does: `on:` (notify)
    stays the string "on" instead of YAML 1.1's True, so a rewritten fleet file still loads."""


def _mapping_as_written(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    return {(k.value if isinstance(k, yaml.ScalarNode) else loader.construct_object(k, deep=True)):
            loader.construct_object(v, deep=True) for k, v in node.value}


_KeysAsWritten.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_as_written)


def read_yaml(path: Path) -> Any:
    """A fleet file's raw YAML, keys as written."""
    return yaml.load(path.read_text(), Loader=_KeysAsWritten)  # noqa: S506 - a SafeLoader subclass


def registry_host(image: str) -> tuple[str, str]:
    """(registry host or "", repository path) of an image reference without tag."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", image


def write_fleet_files(fleet: LocalFleet, directory: str | Path, source: str | Path | None,
                      made_by: str = "sim") -> Path:
    """Write DIR/<id>.yaml per cluster, DIR/ca.crt and DIR/clusters.yaml; returns the latter.

    `source` is the input fleet file (None: a default app over the fleet's ids); `made_by`
    ("sim" or "lab") names the command in the files' first line.
    """
    mark = _MARKS[made_by]
    out = Path(directory).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    written = {out / "clusters.yaml"}
    for cid in fleet.ids:
        path = out / f"{cid}.yaml"
        write_private(path, mark + yaml.safe_dump(fleet.kubeconfig(cid), sort_keys=False))
        written.add(path)
    # Stale kubeconfigs of an earlier run would break "no other .yaml file".
    for stale in out.glob("*.yaml"):
        if stale not in written and stale.read_text(errors="replace").startswith(tuple(_MARKS.values())):
            stale.unlink()
    ca = out / "ca.crt"
    ca.write_bytes(fleet.ca_pem)
    raw = _rewrite(fleet, Path(source) if source else None, out, ca)
    target = out / "clusters.yaml"
    write_private(target, _HEADERS[made_by] + yaml.safe_dump(raw, sort_keys=False))
    return target


def _rewrite(fleet: LocalFleet, source: Path | None, out: Path, ca: Path) -> dict[str, Any]:
    if source is None:
        raw: dict[str, Any] = {"app": {"name": "user-service", "image": "registry.example.com/apps/user-service"},
                               "clusters": [{"id": cid} for cid in fleet.ids]}
        base = Path.cwd()
    else:
        raw = read_yaml(source) or {}
        base = source.resolve().parent
    app = raw.setdefault("app", {})
    if isinstance(app, dict):
        if isinstance(app.get("image"), str):
            _, repo = registry_host(app["image"])
            app["image"] = f"{fleet.registry_host}/{repo}"
        registry = app.get("registry") if isinstance(app.get("registry"), dict) else {}
        registry["ca_file"] = str(ca)
        app["registry"] = registry
        if isinstance(app.get("manifests"), str):
            app["manifests"] = _absolute(app["manifests"], base)
        if isinstance(app.get("chart"), str) and "://" not in app["chart"]:
            app["chart"] = _absolute(app["chart"], base)   # a chart directory
        history = app.get("history")
        # A ledger path that is given stays where it was; without one the ledger defaults to
        # beside the rewritten file (a scratch ledger for the local fleet).
        if isinstance(history, dict) and isinstance(history.get("path"), str):
            history["path"] = _absolute(history["path"], base)
    ids = set(fleet.ids)
    for entry in raw.get("clusters") or []:
        if not isinstance(entry, dict) or entry.get("id") not in ids:
            continue
        old = entry.get("credentials") if isinstance(entry.get("credentials"), dict) else {}
        creds: dict[str, Any] = {"kubeconfig": str(out / f"{entry['id']}.yaml")}
        if old.get("server"):
            creds["server"] = fleet.url(entry["id"])
        if old.get("ca_sha256"):
            creds["ca_sha256"] = fleet.ca_sha256
        entry["credentials"] = creds
    return raw


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (kubeconfigs hold credentials)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
