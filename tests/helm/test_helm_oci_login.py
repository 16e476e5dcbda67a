"""An `oci://` chart on a registry that needs a login (Debian's docker-registry with
htpasswd/bcrypt auth on 127.0.0.1, plain HTTP as `app.chart_registry.plain_http: true`
says): the login comes from the environment variables or the Vault/OpenBao secret the
fleet file names, reaches helm only as a private registry config file, and a login the
registry refuses stops the release in pre-flight (exit 2) naming the fleet file field,
before any cluster is touched. Over TLS (the registry serving a certificate of a test CA)
helm trusts `chart_registry.ca_file`, and without it refuses the registry in pre-flight.
The release story runs on the simulator and on the lab."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from console.cli import main
from console.config import load
from tests.credentials.conftest import bao, clean_vault_env  # noqa: F401 - fixtures
from tests.registry.conftest import Registry, bcrypt_htpasswd, start_registry

from .conftest import APP, CHART, HelmWorld, chart_fleet_file


def start_chart_registry(workdir: Path, helm: Path, tls: bool = False) -> Registry:
    """A registry with htpasswd auth (TLS from a fresh CA when `tls`) holding
    oci://HOST/charts/user-service:0.1.0."""
    workdir.mkdir(parents=True, exist_ok=True)
    user, password = "charts", secrets.token_urlsafe(16)
    (workdir / "htpasswd").write_text(bcrypt_htpasswd(user, password) + "\n")
    certs = None
    if tls:
        from console.lab.pki import generate
        pki = generate(workdir / "pki")    # a server certificate for 127.0.0.1
        certs = (pki.path("server.crt"), pki.path("server.key"), pki.path("ca.crt"))
    server = start_registry(workdir, {"htpasswd": {"realm": "charts",
                                                   "path": str(workdir / "htpasswd")}},
                            tls=certs)
    server.auth = (user, password)
    # The push logs in as the console does: a registry config file, no password on argv.
    config = workdir / "push-auth.json"
    config.write_text(json.dumps({"auths": {server.host: {
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    env = {"HOME": str(workdir), "PATH": os.environ.get("PATH", "")}
    try:
        subprocess.run([str(helm), "package", str(CHART), "-d", str(workdir)], check=True,
                       capture_output=True, timeout=120, env=env)
        transport = ["--ca-file", str(server.ca_file)] if tls else ["--plain-http"]
        subprocess.run([str(helm), "push", str(workdir / "user-service-0.1.0.tgz"),
                        f"oci://{server.host}/charts", *transport, "--registry-config",
                        str(config)], check=True, capture_output=True, timeout=120, env=env)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def login_registry(tmp_path_factory: pytest.TempPathFactory, helm: Path) -> Iterator[Registry]:
    """A plain-HTTP registry with htpasswd auth holding the example chart."""
    server = start_chart_registry(tmp_path_factory.mktemp("chart-registry"), helm)
    yield server
    server.stop()


def login_world(sim_fleet, tmp_path: Path, helm: Path, registry: Registry,
                chart_registry: dict | None, **fleet_doc) -> HelmWorld:
    tmp_path.mkdir(parents=True, exist_ok=True)
    fleet = sim_fleet(["h1"], never_pull=["*broken*"])
    source = chart_fleet_file(tmp_path, ["h1"])
    doc = yaml.safe_load(source.read_text())
    doc["app"].update(chart=f"oci://{registry.host}/charts/user-service", chart_version="0.1.0")
    if chart_registry is not None:
        doc["app"]["chart_registry"] = chart_registry
    doc.update(fleet_doc)
    source.write_text(yaml.safe_dump(doc))
    path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=source)
    return HelmWorld(fleet, path, load(path), helm)


ENV_LOGIN = {"username_env": "CHART_USER", "password_env": "CHART_PASSWORD", "plain_http": True}


def private_files_holding(secret: str) -> list[Path]:
    """Files left in the console's private directory that hold `secret` (helm's HOMEs and
    their registry config files are removed after each call)."""
    from console.kube.private_files import private_dir
    return [p for p in Path(private_dir()).rglob("*")
            if p.is_file() and secret in p.read_text(errors="replace")]


def test_a_chart_behind_a_login_from_env_is_released_and_rolled_back(
        sim_fleet, tmp_path, helm, login_registry, monkeypatch, capsys):
    user, password = login_registry.auth
    monkeypatch.setenv("CHART_USER", user)
    monkeypatch.setenv("CHART_PASSWORD", password)
    w = login_world(sim_fleet, tmp_path, helm, login_registry, ENV_LOGIN)
    cli = ["--config", str(w.config_path)]
    assert main(["deploy", *cli, "--tag", "v1", "--yes"]) == 0
    assert main(["deploy", *cli, "--tag", "v2-broken", "--yes", "--fail-fast-grace",
                 "1"]) == 1
    out = capsys.readouterr()
    history = w.history("h1")
    assert [h["chart"] for h in history] == ["user-service-0.1.0"] * 3
    assert history[-1]["description"] == "Rollback to 1" and w.version("h1") == "v1"
    # The password went nowhere it could be read back: no output, ledger or leftover file.
    assert password not in out.out + out.err
    ledger = w.config.app.history.path
    assert not any(password in p.read_text(errors="replace")
                   for p in ledger.rglob("*") if p.is_file() and ".git" not in p.parts)
    assert private_files_holding(password) == []


@pytest.mark.parametrize("wrong", ["password", "unset"])
def test_a_refused_or_missing_login_fails_preflight_naming_the_field(
        sim_fleet, tmp_path, helm, login_registry, monkeypatch, capsys, wrong):
    user, password = login_registry.auth
    monkeypatch.setenv("CHART_USER", user)
    if wrong == "password":
        monkeypatch.setenv("CHART_PASSWORD", password + "-not")
    else:
        monkeypatch.delenv("CHART_PASSWORD", raising=False)
    w = login_world(sim_fleet, tmp_path, helm, login_registry, ENV_LOGIN)
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--yes"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    if wrong == "password":
        assert (f"the chart registry {login_registry.host} refused the login from "
                "app.chart_registry.username_env/password_env ($CHART_USER, "
                f"$CHART_PASSWORD) in {w.config.source}") in text, text
    else:
        assert ("app.chart_registry.password_env: the environment variable "
                "$CHART_PASSWORD is not set or empty") in text, text
    assert password not in text
    assert w.fleet.get("h1", "/namespaces", "", "h1") is None
    assert w.fleet.get("h1", "apps/deployments", "h1", APP) is None


def test_no_login_for_a_registry_that_wants_one_fails_preflight(
        sim_fleet, tmp_path, helm, login_registry, capsys):
    w = login_world(sim_fleet, tmp_path, helm, login_registry, {"plain_http": True})
    code = main(["check", "--config", str(w.config_path), "--tag", "v1", "--json"])
    doc = json.loads(capsys.readouterr().out)
    rows = doc["results"] if isinstance(doc, dict) else doc
    chart = next(r for r in rows if r["check"] == "chart")
    assert code == 2 and not chart["ok"]
    assert "the registry wants a login: name it in app.chart_registry" in chart["detail"], \
        chart["detail"]


def test_a_login_from_vault(sim_fleet, tmp_path, helm, login_registry, bao, monkeypatch):
    user, password = login_registry.auth
    bao.client().secrets.kv.v2.create_or_update_secret(
        path="charts/registry", mount_point="secret",
        secret={"username": user, "password": password})
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    w = login_world(sim_fleet, tmp_path, helm, login_registry,
                    {"vault": "secret/charts/registry", "plain_http": True},
                    vault={"addr": bao.addr})
    result = w.release("v1")
    assert result.exit_code == 0, result.preflight.table() if result.preflight else result
    assert w.history("h1")[-1]["chart"] == "user-service-0.1.0" and w.version("h1") == "v1"

    bao.client().secrets.kv.v2.create_or_update_secret(
        path="charts/registry", mount_point="secret",
        secret={"username": user, "password": "stale"})
    refused = w.release("v2")   # the login is read again for every release
    assert refused.exit_code == 2 and refused.outcome == "preflight_failed"
    chart = next(r for r in refused.preflight.results if r.check == "chart")
    assert "refused the login from app.chart_registry.vault (secret/charts/registry)" in \
        chart.detail, chart.detail
    assert w.version("h1") == "v1" and len(w.history("h1")) == 1


def test_a_chart_behind_a_login_on_sim_and_lab(chart_stage, login_registry, monkeypatch,
                                               capsys):
    s = chart_stage
    user, password = login_registry.auth
    monkeypatch.setenv("CHART_USER", user)
    monkeypatch.setenv("CHART_PASSWORD", password + "-stale")
    cli = ["--config", str(s.write(app={
        "chart": f"oci://{login_registry.host}/charts/user-service", "chart_version": "0.1.0",
        "chart_registry": ENV_LOGIN}))]
    assert main(["deploy", *cli, "--tag", "v1", "--clusters", "c0", "--yes"]) == 2
    out = capsys.readouterr().out
    assert "refused the login from app.chart_registry.username_env/password_env" in out
    assert s.fleet.get("c0", "/namespaces", "", s.ns("c0")) is None

    monkeypatch.setenv("CHART_PASSWORD", password)
    assert main(["deploy", *cli, "--tag", "v1", "--clusters", "c0", "--yes"]) == 0
    assert main(["deploy", *cli, "--tag", "v2-broken", "--clusters", "c0", "--yes",
                 "--fail-fast-grace", "1"]) == 1
    assert s.revisions("c0") == [(1, "superseded", "v1"), (2, "superseded", "v2-broken"),
                                 (3, "deployed", "v1")]
    assert [h["chart"] for h in s.helm_json("c0", "history", APP)] == \
        ["user-service-0.1.0"] * 3
    out = capsys.readouterr()
    assert password not in out.out + out.err


def test_a_login_over_tls_trusts_the_ca_file(sim_fleet, tmp_path, helm, monkeypatch):
    server = start_chart_registry(tmp_path / "tls-registry", helm, tls=True)
    try:
        user, password = server.auth
        monkeypatch.setenv("CHART_USER", user)
        monkeypatch.setenv("CHART_PASSWORD", password)
        login = {"username_env": "CHART_USER", "password_env": "CHART_PASSWORD"}
        untrusted = login_world(sim_fleet, tmp_path / "untrusted", helm, server, login)
        refused = untrusted.release("v1")
        assert refused.exit_code == 2 and refused.outcome == "preflight_failed"
        chart = next(r for r in refused.preflight.results if r.check == "chart")
        assert "certificate" in chart.detail, chart.detail
        assert untrusted.fleet.get("h1", "/namespaces", "", "h1") is None

        w = login_world(sim_fleet, tmp_path / "trusted", helm, server,
                        {**login, "ca_file": str(server.ca_file)})
        assert w.config.app.chart.registry.ca_file == server.ca_file
        result = w.release("v1")
        assert result.exit_code == 0, result.preflight.table() if result.preflight else result
        assert w.history("h1")[-1]["chart"] == "user-service-0.1.0" and w.version("h1") == "v1"
    finally:
        server.stop()
