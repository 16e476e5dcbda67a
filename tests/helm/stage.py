"""A chart story's stage, the same on the simulator and on the lab's real Kubernetes:
three clusters (c0..c2), a chart fleet file with the story's own namespaces (so stories
share one lab), and readers that run helm as an operator with the admin kubeconfig."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from console.config import load

from .conftest import APP, CHART

IDS = ("c0", "c1", "c2")
SETTINGS: dict[str, Any] = {"readiness_delay": 0.5, "jitter": 0.3, "never_pull": ("*broken*",)}
CANARY = {"canary": {"waves": [["c0"], ["c1"], ["c2"]], "gates": True}}
_namespaces = itertools.count(1)


def next_namespace() -> str:
    """A namespace rule no other story of this test session uses (the lab is shared)."""
    return f"hd{next(_namespaces)}-{{cluster}}"


@dataclass
class ChartStage:
    """A fleet (sim or lab), a chart fleet file with this story's namespaces, and readers."""

    kind: str
    fleet: Any
    directory: Path
    namespace_template: str
    helm: Path
    config_path: Path = field(init=False)

    def write(self, storage: str = "secret", name: str = "fleet",
              app: dict[str, Any] | None = None) -> Path:
        """The story's fleet file (`app` overrides keys of its `app` section)."""
        doc: dict[str, Any] = {"app": {"name": APP, "image": "registry.example.com/apps/user-service",
                       "chart": str(CHART), "namespace": self.namespace_template,
                       "helm_storage": storage, "rollout_timeout": "90s",
                       "history": {"path": str(self.directory / f"history-{name}")}},
               "defaults": {"values": {"replicas": 2, "resources": {
                   "requests": {"cpu": "10m", "memory": "16Mi"},
                   "limits": {"cpu": "100m", "memory": "64Mi"}}}},
               "strategies": CANARY,
               "clusters": [{"id": cid, "groups": ["fleet"],
                             "credentials": {"kubeconfig": f"{cid}.yaml"}} for cid in IDS]}
        doc["app"].update(app or {})
        source = self.directory / f"{name}-in.yaml"
        source.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.config_path = self.fleet.write_kubeconfigs(self.directory / name,
                                                        config_path=source)
        return self.config_path

    def ns(self, cid: str) -> str:
        return self.namespace_template.format(cluster=cid)

    def version(self, cid: str) -> str | None:
        dep = self.fleet.get(cid, "apps/deployments", self.ns(cid), APP)
        from console.kube.driver import image_tag
        return image_tag(dep["spec"]["template"]["spec"]["containers"][0]["image"]) \
            if dep else None

    def helm_json(self, cid: str, *args: str) -> Any:
        """`helm ARGS -o json` on a cluster, as an operator with the admin kubeconfig runs it."""
        admin = self.directory / f"admin-{cid}.yaml"
        if not admin.exists():
            fd = os.open(admin, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(yaml.safe_dump(self.fleet.kubeconfig(cid)))
        storage = load(self.config_path).app.chart.storage
        out = subprocess.run([str(self.helm), *args, "-n", self.ns(cid), "--kubeconfig",
                              str(admin), "-o", "json"], capture_output=True, text=True,
                             timeout=120, check=True,
                             env={"HELM_DRIVER": storage, "HOME": str(self.directory),
                                  "PATH": os.environ.get("PATH", "")})
        return json.loads(out.stdout) if out.stdout.strip() else None

    def helm_run(self, cid: str, *args: str) -> str:
        """`helm ARGS` on a cluster as an operator (admin kubeconfig, the app's storage);
        its output."""
        self.helm_json(cid, "list")   # writes the admin kubeconfig once
        storage = load(self.config_path).app.chart.storage
        out = subprocess.run([str(self.helm), *args, "-n", self.ns(cid), "--kubeconfig",
                              str(self.directory / f"admin-{cid}.yaml")], capture_output=True,
                             text=True, timeout=120, check=True,
                             env={"HELM_DRIVER": storage, "HOME": str(self.directory),
                                  "PATH": os.environ.get("PATH", "")})
        return out.stdout

    def revisions(self, cid: str) -> list[tuple[int, str, str]]:
        """[(revision, status, image.tag)] of the app's Helm release on a cluster."""
        out = []
        for entry in self.helm_json(cid, "history", APP):
            values = self.helm_json(cid, "get", "values", APP, "--revision",
                                    str(entry["revision"])) or {}
            out.append((entry["revision"], entry["status"], values["image"]["tag"]))
        return out
