"""What the release tests share: the fleet file they write for the demo app, an approver
that approves every gate, a listener that keeps every engine event, and an app repository
in Git (for default tags)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from console.engine import GateAnswer, GateDecision
from console.events import Event, Kind

REPO = Path(__file__).resolve().parents[1]
APP = "user-service"
IMAGE = "registry.example.com/apps/user-service"


def write_fleet_file(directory: Path, ids: Sequence[str], app: dict[str, Any],
                     values: dict[str, Any], *, groups: dict[str, list[str]] | None = None,
                     strategies: dict[str, Any] | None = None) -> Path:
    """`directory/fleet-in.yaml` (before the fleet rewrites it) for clusters `ids`: the
    demo app with the `app` keys given (manifests or chart, namespace, ...), its history
    in `directory`, the default `values`, each cluster in `groups` (default `fleet`)."""
    doc: dict[str, Any] = {
        "app": {"name": APP, "image": IMAGE, **app,
                "history": {"path": str(directory / "history")}},
        "defaults": {"values": values},
        "clusters": [{"id": cid, "groups": (groups or {}).get(cid, ["fleet"]),
                      "credentials": {"kubeconfig": f"{cid}.yaml"}} for cid in ids],
    }
    if strategies:
        doc["strategies"] = strategies
    path = directory / "fleet-in.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def approve(_request: Any) -> GateAnswer:
    """An approver that approves every gate."""
    return GateAnswer(GateDecision.APPROVE, by="test")


@dataclass
class Recorder:
    """An engine listener that keeps every event."""

    events: list[Event] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, cluster: str | None = None) -> list[Kind]:
        """Event kinds in order (of one cluster, if given)."""
        return [e.kind for e in self.events if cluster is None or e.cluster == cluster]

    def of(self, kind: Kind) -> list[Event]:
        """Every event of one kind."""
        return [e for e in self.events if e.kind is kind]


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd`; its stdout, stripped (a non-zero exit fails the test)."""
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=True, timeout=30, stdin=subprocess.DEVNULL).stdout.strip()


def one_commit_repository(repo: Path) -> str:
    """`repo` made an app's Git repository with one commit (a README); its short commit
    id."""
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    (repo / "README").write_text("the app\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "first")
    return git(repo, "rev-parse", "--short", "HEAD")


def on_sim(sim_fleet: Callable[..., Any], ids: Sequence[Any], directory: Path,
           source_for: Callable[[list[str]], Path], **sim: Any) -> tuple[Any, Path]:
    """`ids` (names or `ClusterSpec`s) started on the simulator - pods ready after 0.2 s
    with 0.1 s jitter unless `sim` says otherwise - and the fleet file
    `source_for(cluster ids)` rewritten onto it; (fleet, rewritten fleet file)."""
    sim.setdefault("readiness_delay", 0.2)
    sim.setdefault("jitter", 0.1)
    fleet = sim_fleet(ids, **sim)
    source = source_for([getattr(i, "id", i) for i in ids])
    return fleet, fleet.write_kubeconfigs(directory / "fleet", config_path=source)
