"""`release-console status` reads clusters with plain kubeconfigs (a server, its CA data, a
static token) without the Kubernetes client library (`console.kube.plain_api`): the same
matrix, and the library is never imported - not for a deployed cluster, a cluster without
the app (a 404) nor one whose token is refused (a 401). A cluster whose kubeconfig is not
plain is read through the library in the same run.

Each run is a fresh interpreter (what a user's `status` is), talking to the simulated
clusters over HTTP through the real client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.fleets import REPO

STATUS = r"""
import sys
from console.cli import main
code = main(["status", "--json", "--config", sys.argv[1]])
print(f"exit {code} library {'kubernetes' in sys.modules}", file=sys.stderr)
"""


def status(config_path: Path) -> tuple[dict[str, Any], str]:
    done = subprocess.run([sys.executable, "-c", STATUS, str(config_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.stderr.strip().splitlines(), done
    return json.loads(done.stdout), done.stderr.strip().splitlines()[-1]


def kubeconfig_of(w: Any, cid: str) -> Path:
    doc = yaml.safe_load(w.config_path.read_text())
    entry = next(c for c in doc["clusters"] if c["id"] == cid)
    return Path(entry["credentials"]["kubeconfig"])


def test_status_of_plain_kubeconfigs_never_imports_the_client_library(world):
    w = world(["a", "b", "c", "d"])
    w.deploy_everywhere("v1", ["a", "b", "d"])
    w.fleet.set_faults("b", error_rate=1.0, error_codes=[403])
    path = kubeconfig_of(w, "d")
    doc = yaml.safe_load(path.read_text())
    doc["users"][0]["user"]["token"] = "refused"
    path.write_text(yaml.safe_dump(doc))

    matrix, said = status(w.config_path)

    by_cluster = {c["cluster"]: c for c in matrix["clusters"]}
    assert [c["cluster"] for c in matrix["clusters"]] == ["a", "b", "c", "d"]
    assert (by_cluster["a"]["version"], by_cluster["a"]["reachable"]) == ("v1", True)
    assert by_cluster["b"]["error"].startswith("API error 403"), by_cluster["b"]
    assert (by_cluster["c"]["version"], by_cluster["c"]["reachable"]) == (None, True)
    assert by_cluster["d"]["error"] == "unauthorized (401): the cluster rejected the " \
        "credentials", by_cluster["d"]
    assert matrix["unreachable"] == ["b", "d"]
    assert said == "exit 4 library False"


def test_a_kubeconfig_that_is_not_plain_is_read_through_the_library_in_the_same_run(world):
    w = world(["a", "b"])
    w.deploy_everywhere("v1")
    path = kubeconfig_of(w, "b")
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["cluster"]["tls-server-name"] = "localhost"   # on the sim's cert
    path.write_text(yaml.safe_dump(doc))

    matrix, said = status(w.config_path)

    assert [(c["cluster"], c["version"], c["reachable"]) for c in matrix["clusters"]] == \
        [("a", "v1", True), ("b", "v1", True)]
    assert said == "exit 0 library True"
