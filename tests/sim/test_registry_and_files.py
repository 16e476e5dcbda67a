"""The demo registry, the kubeconfigs and rewritten fleet file, and `release-console sim`."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from kubernetes import client, config

from console.config import load as load_fleet
from console.sim import SimFleet

REPO = Path(__file__).resolve().parents[2]
OCI = "application/vnd.oci.image.manifest.v1+json"


def test_demo_registry_answers_like_distribution(sim_fleet):
    fleet = sim_fleet(["a"], registry_missing=["*missing*"])
    with httpx.Client(base_url=fleet.registry_url, verify=fleet.tls.client_context(), timeout=5) as http:
        assert http.get("/v2/").status_code == 200
        head = http.head("/v2/apps/user-service/manifests/v1.2.3", headers={"Accept": OCI})
        assert head.status_code == 200 and head.headers["Content-Type"] == OCI
        digest = head.headers["Docker-Content-Digest"]
        assert digest.startswith("sha256:") and len(digest) == 71
        got = http.get("/v2/apps/user-service/manifests/v1.2.3", headers={"Accept": OCI})
        assert got.json()["mediaType"] == OCI and got.headers["Docker-Content-Digest"] == digest
        assert http.get(f"/v2/apps/user-service/manifests/{digest}", headers={"Accept": OCI}).status_code == 200
        config_digest = got.json()["config"]["digest"]
        assert http.get(f"/v2/apps/user-service/blobs/{config_digest}").status_code == 200
        missing = http.get("/v2/apps/user-service/manifests/v9-missing", headers={"Accept": OCI})
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert http.head("/v2/apps/user-service/manifests/v9-missing", headers={"Accept": OCI}).status_code == 404
        # like distribution, an OCI manifest is not served to a client that does not accept it
        assert http.get("/v2/apps/user-service/manifests/v1.2.3").status_code == 404
    assert fleet.registry_counters()["HEAD manifests"] == 2
    fleet.set_registry_missing(["v1.2.*"])
    with httpx.Client(base_url=fleet.registry_url, verify=fleet.tls.client_context(), timeout=5) as http:
        assert http.head("/v2/apps/user-service/manifests/v1.2.3", headers={"Accept": OCI}).status_code == 404
        assert http.head("/v2/apps/user-service/manifests/v9-missing", headers={"Accept": OCI}).status_code == 200


def test_write_kubeconfigs_rewrites_the_fleet_file(tmp_path):
    source = tmp_path / "fleet"
    source.mkdir()
    (source / "clusters.yaml").write_text(yaml.safe_dump({
        "app": {"name": "web", "image": "registry.example.com/apps/web", "manifests": "deploy/web",
                "history": {"path": "ledger"}, "registry": {"insecure": False}},
        "clusters": [{"id": "staging", "credentials": {"kubeconfig": "~/.kube/x.yaml"}, "future_key": 1},
                     {"id": "prod", "credentials": {"vault": "kv/prod", "server": "https://10.0.0.1:6443",
                                                    "ca_sha256": "00" * 32},
                      "sim": {"error_rate": 0.5, "some_new_setting": True}}],
        "sim": {"readiness_delay": 0.3, "never_pull": ["*broken*"], "registry_missing": "*gone*"},
    }))
    out = tmp_path / "out"
    with SimFleet.from_config(source / "clusters.yaml") as fleet:
        assert fleet.ids == ("staging", "prod") and fleet.registry_missing == ("*gone*",)
        written = fleet.write_kubeconfigs(out)
        assert written == out / "clusters.yaml"
        assert sorted(p.name for p in out.glob("*.yaml")) == ["clusters.yaml", "prod.yaml", "staging.yaml"]
        assert oct((out / "staging.yaml").stat().st_mode & 0o777) == "0o600"
        fleet_file = yaml.safe_load(written.read_text())
        app = fleet_file["app"]
        assert app["image"] == f"127.0.0.1:{fleet.registry_port}/apps/web"
        assert app["manifests"] == str(source / "deploy/web") and app["history"]["path"] == str(source / "ledger")
        assert Path(app["registry"]["ca_file"]).read_bytes() == fleet.ca_pem
        assert not app["registry"]["ca_file"].endswith(".yaml")
        staging, prod = fleet_file["clusters"]
        assert staging["credentials"] == {"kubeconfig": str(out / "staging.yaml")} and staging["future_key"] == 1
        assert prod["credentials"] == {"kubeconfig": str(out / "prod.yaml"), "server": fleet.url("prod"),
                                       "ca_sha256": fleet.ca_sha256}
        kubeconfig = yaml.safe_load((out / "prod.yaml").read_text())
        assert kubeconfig["current-context"] == "prod"
        assert base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]) == fleet.ca_pem
        # the files work with the real client; the cluster's sim block applies
        api = config.new_client_from_config(config_file=str(out / "staging.yaml"), persist_config=False)
        assert client.VersionApi(api).get_code(_request_timeout=5).major == "1"
        assert fleet.call(lambda: fleet.clusters["prod"].settings.error_rate) == 0.5
        assert fleet.call(lambda: fleet.clusters["prod"].settings.never_pull) == ("*broken*",)
        # without a ledger path the ledger defaults to beside the rewritten file
        raw = yaml.safe_load((source / "clusters.yaml").read_text())
        raw["app"]["history"] = {"remote": "git@example.com:ops/ledger.git"}
        (source / "clusters.yaml").write_text(yaml.safe_dump(raw))
        again = yaml.safe_load(fleet.write_kubeconfigs(out).read_text())
        assert again["app"]["history"] == {"remote": "git@example.com:ops/ledger.git"}


@contextmanager
def served(directory: Path, *args: str) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """`python -m console ARGS` (a `sim` command) run in `directory`, its output read
    until a line says "ready" (30 s at most); (process, lines read). Killed after."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "console", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=directory)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "ready" in line:
                break
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sim_command_serves_until_sigterm(tmp_path):
    with served(tmp_path, "--config", str(REPO / "clusters.yaml"), "sim", "--kubeconfig-dir",
                str(tmp_path), "--readiness-delay", "0.1") as (proc, lines):
        assert any("ready" in line for line in lines), (lines, proc.stderr.read() if proc.poll() is not None else "")
        names = sorted(p.name for p in tmp_path.glob("*.yaml"))
        assert names == sorted(["clusters.yaml", "staging.yaml", "prod-eu-10pct.yaml", "prod-eu.yaml",
                                "prod-us.yaml", "prod-ap.yaml"])
        fleet_file = yaml.safe_load((tmp_path / "clusters.yaml").read_text())
        assert fleet_file["app"]["manifests"] == str(REPO / "deploy/user-service")
        # the rewritten file is a valid fleet file (`notify.on` stayed a key, not YAML's True)
        loaded = load_fleet(tmp_path / "clusters.yaml")
        assert loaded.cluster("prod-ap").credentials.kubeconfig == tmp_path / "prod-ap.yaml"
        assert loaded.app.registry.ca_file == tmp_path / "ca.crt"
        api = config.new_client_from_config(config_file=str(tmp_path / "staging.yaml"), persist_config=False)
        assert client.CoreV1Api(api).list_namespace(_request_timeout=5).items
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_sim_command_with_count(tmp_path):
    with served(tmp_path, "sim", "--count", "3", "--kubeconfig-dir", str(tmp_path)) as (proc, lines):
        assert lines and "ready" in lines[-1], lines
        assert sorted(p.name for p in tmp_path.glob("*.yaml")) == ["c0.yaml", "c1.yaml", "c2.yaml", "clusters.yaml"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_sim_command_names_a_missing_fleet_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "console", "--config", str(tmp_path / "nope.yaml"), "sim",
                           "--kubeconfig-dir", str(tmp_path)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr
