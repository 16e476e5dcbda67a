"""Credential files stay private, and pre-flight rides out a flaky cluster.

The kubernetes client needs files for CA, client certificate and key data: they must go to
the console's 0700 private directory (removed at exit), never the shared temp directory.
A cluster whose API answers 10% of calls with 500 (`sim: {error_rate: 0.1}`) must pass
the whole pre-flight every time, through the retrying `KubeClient`.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from console.cli import main
from console.sim import ClusterSpec
from tests.engine.conftest import REPO

MAKE_CLIENT = """
import json, os, sys, tempfile
from console.kube.private_files import private_dir
from console.kube.client import KubeClient, new_api_client
kubeconfig = json.loads(sys.stdin.read())
api = new_api_client("a", kubeconfig)
version = KubeClient("a", api, 10.0).request("GET", "/version")
ca = api.configuration.ssl_ca_cert
print(json.dumps({"ca": ca, "private": str(private_dir()), "tmp": tempfile.gettempdir(),
                  "entries": sorted(os.listdir(tempfile.gettempdir())),
                  "ca_mode": os.stat(ca).st_mode, "dir_mode": os.stat(private_dir()).st_mode,
                  "answered": bool(version)}))
api.close()
"""


def test_ca_files_go_to_the_private_directory_and_are_removed_at_exit(sim_fleet, tmp_path):
    fleet = sim_fleet(["a"])
    kubeconfig = fleet.kubeconfig("a")
    assert kubeconfig["clusters"][0]["cluster"].get("certificate-authority-data")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # A fresh TMPDIR for the process shows every file the client writes.
    done = subprocess.run([sys.executable, "-c", MAKE_CLIENT], input=json.dumps(kubeconfig),
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "TMPDIR": str(tmp)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["answered"] and seen["tmp"] == str(tmp)
    private = seen["private"]
    assert os.path.dirname(seen["ca"]) == private
    assert seen["entries"] == [os.path.basename(private)]     # nothing else in TMPDIR
    assert stat.S_IMODE(seen["dir_mode"]) == 0o700
    assert stat.S_IMODE(seen["ca_mode"]) == 0o600
    assert os.listdir(tmp) == []                              # removed at exit


def test_a_cluster_with_ten_percent_errors_passes_pre_flight_five_times_in_a_row(
        world, capsys):
    w = world([ClusterSpec("flaky", {"error_rate": 0.1}), "steady"], seed=1121)
    config = str(w.config_path)
    for attempt in range(5):
        code = main(["check", "--config", config, "--tag", "v1", "--json"])
        report = json.loads(capsys.readouterr().out)
        failed = [r for r in report["results"] if not r["ok"]]
        assert code == 0 and not failed, (attempt, failed)
        assert {r["check"] for r in report["results"] if r["cluster"] == "flaky"} >= {
            "cluster", "namespace", "live", "access", "dry-run", "capacity"}
    assert w.fleet.counters("flaky")["injected_errors"] > 0
