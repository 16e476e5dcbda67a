"""Fixtures of the fault and abuse tests: the engine tests' `world` (a started local fleet
with its rewritten clusters.yaml), the session's OpenBao, the Git remotes, and readers of
what the ledger says - reused from the other suites, not rewritten."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from console.history import Ledger, Release
from tests.credentials.conftest import bao, clean_vault_env, throwaway_bao  # noqa: F401 - fixtures
from tests.engine.conftest import World, approve, fleet_file, world  # noqa: F401 - fixtures
from tests.history.conftest import (  # noqa: F401 - fixtures
    bare_remote, git, no_git_identity, reject_pushes,
)

APP = "user-service"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def events_of(out: str) -> list[dict]:
    """The JSON events of a `--json` run's stdout."""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def releases(config: Any) -> dict[str, Release]:
    """Every release the fleet's ledger holds, by id (read with a fresh Ledger)."""
    ledger = Ledger.for_config(config)
    try:
        return {r.id: r for r in ledger.releases()}
    finally:
        ledger.close()


def outcomes(release: Release) -> dict[str, str]:
    """cluster -> outcome as the ledger recorded it."""
    return {c.cluster: c.outcome for c in release.clusters}


def writes(fleet: Any, cid: str) -> int:
    """Write requests (create/update/patch/delete) a simulated cluster has served; access
    reviews and pre-flight's dry runs are requests that change nothing, so they do not count."""
    counters = fleet.counters(cid)
    pairs = counters["by_verb_resource"]
    return sum(n - counters["dry_run"].get(key, 0) for key, n in pairs.items()
               if key.split(" ", 1)[0] in WRITE_VERBS and not key.endswith("reviews"))


def stored(fleet: Any, cid: str) -> Any:
    """The app's Deployment as stored (generation, annotations, spec), or None: what a
    release changes. Pre-flight's dry-runs are requests, but must leave this alone."""
    dep = fleet.get(cid, "apps/deployments", cid, APP)
    if dep is None:
        return None
    return dep["metadata"]["generation"], dep["metadata"].get("annotations"), dep["spec"]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its content (to prove nothing was written)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@contextmanager
def recorded_engine(w: World, **options: Any) -> Iterator[Any]:
    """An engine on the fleet with the ledger and notifications attached exactly as
    `release-console deploy` attaches them (a `console.session.Session`, its warnings on
    stderr)."""
    from console.cli.deploy_cmd import warn
    from console.session import Session
    engine = w.engine(**options)
    try:
        with Session(w.config, engine, on_warning=warn):
            yield engine
    finally:
        engine.close()


def vault_fleet(w: World, server: Any, tmp_path: Path, *, addr: str | None = None,
                timeout: str = "2s") -> tuple[Path, dict[str, str]]:
    """Move `w`'s credentials into OpenBao (`server`, a `Bao`): each cluster's kubeconfig is stored at
    `secret/kubeconfigs/<id>` and deleted from disk; returns (a fleet file whose clusters
    say `vault: true`, cluster -> the kubeconfig text stored)."""
    import yaml
    doc = yaml.safe_load(w.config_path.read_text())
    texts: dict[str, str] = {}
    kv = server.client().secrets.kv.v2
    for entry in doc["clusters"]:
        cid = entry["id"]
        source = Path(entry["credentials"]["kubeconfig"])
        texts[cid] = source.read_text()
        kv.create_or_update_secret(path=f"kubeconfigs/{cid}", mount_point="secret",
                                   secret={"kubeconfig": texts[cid]})
        source.unlink()
        entry["credentials"] = {"vault": True}
    doc["vault"] = {"addr": addr or server.addr, "timeout": timeout}
    path = tmp_path / "vault-fleet" / "clusters.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, texts


def secrets_of(texts: dict[str, str], *more: str, certificates: bool = True) -> list[str]:
    """What must never appear anywhere: every token, certificate and key in the stored
    kubeconfigs (and distinctive slices of them), plus `more` (e.g. the Vault token);
    without the CA data when `certificates` is false."""
    import yaml
    found: list[str] = [m for m in more if m]
    for text in texts.values():
        kube = yaml.safe_load(text.split("\n", 1)[1] if text.startswith("#") else text)
        for user in kube.get("users", []):
            for key, value in (user.get("user") or {}).items():
                if isinstance(value, str) and len(value) >= 16:
                    found.append(value)
        for cluster in kube.get("clusters", []):
            data = (cluster.get("cluster") or {}).get("certificate-authority-data")
            if data and certificates:
                found.append(data[20:80])   # a slice: also catches a truncated dump
    # A secret cut in half (e.g. by a length limit) must not escape either.
    return found + [s[: len(s) // 2] for s in found if len(s) >= 32]
