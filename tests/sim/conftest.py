"""Helpers for the simulator tests: one kubernetes ApiClient per cluster, and real kubectl runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from console.sim import SimFleet

VENV_KUBECTL = Path(sys.executable).parent / "kubectl"
SYSTEM_KUBECTL = Path("/usr/bin/kubectl")


def kubectl_binaries() -> list[Any]:
    """kubectl 1.37 from the virtualenv, and the system dispatcher (1.27-1.33) when present."""
    found = []
    if VENV_KUBECTL.exists():
        found.append(pytest.param(str(VENV_KUBECTL), id="kubectl-1.37"))
    elif shutil.which("kubectl"):
        found.append(pytest.param(shutil.which("kubectl"), id="kubectl-path"))
    if SYSTEM_KUBECTL.exists() and SYSTEM_KUBECTL.resolve() != VENV_KUBECTL.resolve():
        found.append(pytest.param(str(SYSTEM_KUBECTL), id="kubectl-system"))
    return found


def api_client(fleet: SimFleet, cluster_id: str, token: str | None = None,
               retries: bool | None = None) -> client.ApiClient:
    """An isolated ApiClient for one simulated cluster (`retries=False`: no urllib3 retries,
    which otherwise repeat a 429 with Retry-After three times, sleeping in between)."""
    cfg = client.Configuration()
    if retries is not None:
        cfg.retries = retries
    return config.new_client_from_config_dict(fleet.kubeconfig(cluster_id, token), client_configuration=cfg,
                                              persist_config=False)


@dataclass
class Kubectl:
    """Runs one kubectl binary against one kubeconfig file with a private cache dir."""

    binary: str
    kubeconfig: Path
    cache_dir: Path

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = str(self.cache_dir.parent)  # nothing from the real ~/.kube
        proc = subprocess.run([self.binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                               str(self.cache_dir), *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture
def make_kubectl(tmp_path: Path) -> Iterator[Callable[..., Kubectl]]:
    """`make_kubectl(binary, fleet, cluster_id, token=None)` -> a Kubectl with its own files."""
    count = 0

    def make(binary: str, fleet: SimFleet, cluster_id: str, token: str | None = None) -> Kubectl:
        nonlocal count
        count += 1
        home = tmp_path / f"kubectl-{count}"
        home.mkdir()
        kubeconfig = home / "config.yaml"
        kubeconfig.write_text(yaml.safe_dump(fleet.kubeconfig(cluster_id, token)))
        kubeconfig.chmod(0o600)
        return Kubectl(binary, kubeconfig, home / "cache")

    yield make


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 3
  progressDeadlineSeconds: %(deadline)d
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 25%%, maxUnavailable: 25%%}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: %(image)s
          ports: [{containerPort: 8080}]
          resources: {requests: {cpu: 100m, memory: 64Mi}}
"""


def deployment_yaml(image: str = "registry.example.com/web:v1", deadline: int = 60) -> str:
    """The test Deployment `shop/web` (3 replicas) as YAML."""
    return DEPLOYMENT % {"image": image, "deadline": deadline}


def deployment(image: str = "registry.example.com/web:v1", deadline: int = 60) -> dict[str, Any]:
    """The test Deployment `shop/web` as a dict."""
    return yaml.safe_load(deployment_yaml(image, deadline))
