"""What a kubeconfig may make the client do, through `release-console check` and the real
client against the simulator (issue 11, items 1-3).

- a credential that runs a program or fetches a token (`auth-provider` with `cmd-path`,
  the `oidc` refresh) is refused unless the cluster allows it, and is then named;
- `insecure-skip-tls-verify` needs the cluster's `allow_insecure_tls`;
- the CA pin cannot be walked around: both `certificate-authority` and
  `certificate-authority-data` are refused, and the client gets exactly the verified bytes.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from console import config as fleet_config
from console.cli import main
from console.credentials import CredentialsError, resolve
from console.kube.client import ClusterError, KubeClient, new_api_client
from tests.credentials.kubeconfigs import fleet_file


def fleet_with_kubeconfigs(sim_fleet, tmp_path: Path, ids: list[str]):
    """A started fleet and its clusters.yaml, each cluster on its own kubeconfig file."""
    fleet = sim_fleet(ids)
    path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=fleet_file(
        tmp_path, {cid: {"kubeconfig": "x"} for cid in ids}))
    return fleet, path


def edit_kubeconfig(path: Path, cid: str, change) -> Path:
    """Apply `change(cluster_entry, user_entry)` to the cluster's kubeconfig file."""
    kc_path = path.parent / f"{cid}.yaml"
    data = yaml.safe_load(kc_path.read_text())
    change(data["clusters"][0]["cluster"], data["users"][0]["user"])
    kc_path.write_text(yaml.safe_dump(data))
    return kc_path


def set_credentials(path: Path, cid: str, **fields) -> None:
    """Add fields to one cluster's `credentials` in clusters.yaml."""
    doc = yaml.safe_load(path.read_text())
    for entry in doc["clusters"]:
        if entry["id"] == cid:
            entry["credentials"].update(fields)
    path.write_text(yaml.safe_dump(doc))


def check(path: Path, capsys) -> tuple[int, str]:
    code = main(["check", "--tag", "1.0", "--config", str(path)])
    return code, capsys.readouterr().out


def cluster_line(out: str, cid: str) -> str:
    """The row that says whether a cluster can be talked to: its failed `credentials` check
    (then the cluster's only row: one cause, one line), else its `cluster` check."""
    rows = [line for line in out.splitlines() if line.split()[:1] == [cid]]
    refused = [line for line in rows if line.split()[1:3] == ["credentials", "FAIL"]]
    if refused:
        assert rows == refused, rows
        return refused[0]
    return next(line for line in rows if line.split()[1] == "cluster")


# --------------------------------------------------------------------------- programs


def token_program(tmp_path: Path, token: str) -> tuple[Path, Path]:
    """A gcp-style `cmd-path` program that leaves a marker file and prints `token`."""
    marker = tmp_path / "program-ran"
    program = tmp_path / "get-token.py"
    answer = {"credential": {"access_token": token, "token_expiry": "2099-01-01T00:00:00Z"}}
    program.write_text(f"#!{sys.executable}\n"
                       "import pathlib, sys\n"
                       f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
                       f"print({json.dumps(json.dumps(answer))})\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program, marker


def test_auth_provider_cmd_path_is_refused_unless_allowed_and_then_named(
        sim_fleet, tmp_path, capsys):
    fleet, path = fleet_with_kubeconfigs(sim_fleet, tmp_path, ["plain", "gcp"])
    program, marker = token_program(tmp_path, fleet.admin_token("gcp"))

    def gcp_provider(_cluster, user):
        user.clear()
        user["auth-provider"] = {"name": "gcp", "config": {"cmd-path": str(program)}}

    kc_path = edit_kubeconfig(path, "gcp", gcp_provider)
    code, out = check(path, capsys)
    assert code == 2
    line = cluster_line(out, "gcp")
    assert "FAIL" in line and f"kubeconfig {kc_path}" in line
    assert "auth-provider gcp runs a program (get-token.py)" in line
    assert "credentials.allow_auth_provider: true" in line
    assert not marker.exists()                    # the program never ran
    assert " ok " in cluster_line(out, "plain")
    assert "allowed:" not in out

    set_credentials(path, "gcp", allow_auth_provider=True)
    code, out = check(path, capsys)
    assert " ok " in cluster_line(out, "gcp"), out
    assert marker.exists()                        # allowed: it ran, and its token works
    assert ("allowed: cluster 'gcp': credentials auth-provider gcp runs a program "
            "(get-token.py) (allowed by credentials.allow_auth_provider)") in out
    assert "'plain'" not in "".join(l for l in out.splitlines() if l.startswith("allowed:"))
    assert fleet.admin_token("gcp") not in out


class IdentityProvider:
    """An HTTPS server standing in for an OIDC issuer: it records every request."""

    def __init__(self, context) -> None:
        self.paths: list[str] = []
        seen = self.paths

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                seen.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def issuer() -> Iterator[IdentityProvider]:
    """An issuer whose certificate no client trusts by default (a CA of its own)."""
    from console.sim.tls import generate
    server = IdentityProvider(generate().server_context())
    yield server
    server.stop()


def expired_jwt() -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part({'exp': 1})}.c2ln"


def test_oidc_refresh_is_refused_unless_allowed_and_never_without_tls(
        sim_fleet, tmp_path, capsys, issuer):
    fleet, path = fleet_with_kubeconfigs(sim_fleet, tmp_path, ["oidc"])
    refresh_token = "refresh-" + os.urandom(8).hex()

    def oidc_provider(_cluster, user):
        user.clear()
        user["auth-provider"] = {"name": "oidc", "config": {
            "idp-issuer-url": issuer.url, "client-id": "console", "client-secret": "s3cret",
            "id-token": expired_jwt(), "refresh-token": refresh_token}}

    edit_kubeconfig(path, "oidc", oidc_provider)
    code, out = check(path, capsys)
    line = cluster_line(out, "oidc")
    assert code == 2 and "FAIL" in line
    assert f"auth-provider oidc fetches tokens from {issuer.url}" in line
    assert "allow_auth_provider" in line
    # Allowed, but with no IdP CA the client would refresh without TLS verification.
    set_credentials(path, "oidc", allow_auth_provider=True)
    code, out = check(path, capsys)
    line = cluster_line(out, "oidc")
    assert code == 2 and "without TLS verification" in line and "idp-certificate-authority" in line
    assert issuer.paths == []                     # nothing ever reached the issuer
    assert refresh_token not in out and "s3cret" not in out


# --------------------------------------------------------------------------- TLS off


# Allowed, the client warns of the unverified requests: that is what was asked for.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_skip_tls_verify_needs_the_clusters_opt_in(sim_fleet, tmp_path, capsys):
    fleet, path = fleet_with_kubeconfigs(sim_fleet, tmp_path, ["lax"])

    def skip_verify(cluster, _user):
        del cluster["certificate-authority-data"]    # the fleet CA is trusted nowhere else
        cluster["insecure-skip-tls-verify"] = True

    kc_path = edit_kubeconfig(path, "lax", skip_verify)
    code, out = check(path, capsys)
    line = cluster_line(out, "lax")
    assert code == 2 and "FAIL" in line
    assert f"cluster 'lax': credentials from kubeconfig {kc_path}: refused: the kubeconfig " \
           "skips TLS verification (insecure-skip-tls-verify); set credentials." \
           "allow_insecure_tls: true" in line
    set_credentials(path, "lax", allow_insecure_tls=True)
    code, out = check(path, capsys)
    assert " ok " in cluster_line(out, "lax"), out
    assert ("allowed: cluster 'lax': credentials TLS verification of the API server is off "
            "(insecure-skip-tls-verify, allowed by credentials.allow_insecure_tls)") in out


# --------------------------------------------------------------------------- the CA pin


def test_ca_file_beside_empty_ca_data_is_refused(sim_fleet, tmp_path, capsys, monkeypatch):
    """The walk-around: the pin checks the file, the client used the empty data (and so
    the system CAs). Here an impostor's CA is the system's: it must not be reached."""
    fleet, path = fleet_with_kubeconfigs(sim_fleet, tmp_path, ["pinned"])
    impostor = sim_fleet(["pinned"])
    (tmp_path / "impostor-ca.pem").write_bytes(impostor.ca_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "impostor-ca.pem"))

    def bypass(cluster, _user):
        cluster["server"] = impostor.url("pinned")
        cluster["certificate-authority"] = str(path.parent / "ca.crt")   # the pinned CA
        cluster["certificate-authority-data"] = ""

    kc_path = edit_kubeconfig(path, "pinned", bypass)
    set_credentials(path, "pinned", ca_sha256=fleet.ca_sha256)
    before = impostor.counters("pinned")["total"]
    code, out = check(path, capsys)
    line = cluster_line(out, "pinned")
    assert code == 2 and "FAIL" in line
    assert (f"credentials from kubeconfig {kc_path}: refused: the kubeconfig gives both "
            "certificate-authority and certificate-authority-data") in line
    assert impostor.counters("pinned")["total"] == before     # never reached


def test_the_client_gets_exactly_the_ca_bytes_that_were_verified(sim_fleet, tmp_path):
    """The pinned CA file is swapped after the check: the client still trusts only the
    verified certificate (it is handed the bytes, not the file name)."""
    fleet = sim_fleet(["pinned"])
    impostor = sim_fleet(["pinned"])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(fleet.ca_pem)
    kubeconfig = fleet.kubeconfig("pinned")
    cluster = kubeconfig["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["certificate-authority"] = str(ca_file)
    kc_path = tmp_path / "pinned.yaml"
    kc_path.write_text(yaml.safe_dump(kubeconfig))
    config = fleet_config.load(fleet_file(tmp_path, {"pinned": {
        "kubeconfig": str(kc_path), "ca_sha256": fleet.ca_sha256}}))
    resolved = resolve(config.cluster("pinned"), config)
    ca_file.write_bytes(impostor.ca_pem)          # swapped after the check

    client = KubeClient("pinned", new_api_client("pinned", resolved), 10.0)
    try:
        assert client.request("GET", "/version").get("gitVersion")
    finally:
        client.close()
    # ... and the same client settings do not trust the impostor's certificate.
    aimed = {**resolved, "clusters": [{**resolved["clusters"][0], "cluster": {
        **resolved["clusters"][0]["cluster"], "server": impostor.url("pinned")}}]}
    client = KubeClient("pinned", new_api_client("pinned", aimed), 10.0)
    try:
        with pytest.raises(ClusterError, match="CERTIFICATE_VERIFY_FAILED"):
            client.request("GET", "/version", retry=False)
    finally:
        client.close()
    # A CA file that no longer matches is refused the next time it is read.
    with pytest.raises(CredentialsError, match="refused: the kubeconfig's CA has SHA-256"):
        resolve(config.cluster("pinned"), config)
