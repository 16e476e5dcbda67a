"""What the release tests share: the fleet file they write for the demo app, an approver
that approves every gate, and a listener that keeps every engine event."""

from __future__ import annotations

from collections.abc import Sequence
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
