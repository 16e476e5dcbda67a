"""Fixtures of the fault and abuse tests: the engine tests' `world` (a started local fleet
with its rewritten clusters.yaml), the session's OpenBao, the Git remotes, and readers of
what the ledger says - reused from the other suites, not rewritten."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from console.history import Ledger, Release
from tests.credentials.conftest import bao, clean_vault_env, throwaway_bao  # noqa: F401 - fixtures
from tests.engine.conftest import World, approve, fleet_file, world  # noqa: F401 - fixtures
from tests.history.conftest import bare_remote, git, reject_pushes  # noqa: F401 - fixtures

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
    reviews are POSTs that change nothing, so they do not count."""
    pairs = fleet.counters(cid)["by_verb_resource"]
    return sum(n for key, n in pairs.items()
               if key.split(" ", 1)[0] in WRITE_VERBS and not key.endswith("reviews"))


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its content (to prove nothing was written)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@contextmanager
def recorded_engine(w: World, **options: Any) -> Iterator[Any]:
    """An engine on the fleet with the ledger and notifications attached exactly as
    `release-console deploy` attaches them (`deploy_cmd.recorded`)."""
    from console.cli.deploy_cmd import recorded
    engine = w.engine(**options)
    try:
        with recorded(w.config, engine):
            yield engine
    finally:
        engine.close()
