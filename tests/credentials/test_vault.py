"""Kubeconfigs fetched from a real OpenBao dev server: token and AppRole auth, and every failure."""

from __future__ import annotations

import base64
import logging
import secrets
import socket
import time
from dataclasses import dataclass

import pytest
import yaml

from console import config as fleet_config
from console.credentials import CredentialsError, resolve
from tests.credentials.conftest import Bao, free_port
from tests.credentials.kubeconfigs import ca_pem, fleet_file, kubeconfig

READ_ALL = 'path "secret/data/kubeconfigs/*" { capabilities = ["read"] }'
READ_C1 = 'path "secret/data/kubeconfigs/c1" { capabilities = ["read"] }'


@dataclass
class Stored:
    """What the session's Vault holds, and the secrets the tests must never see in errors."""

    kube_tokens: dict[str, str]
    texts: dict[str, str]
    role_id: str
    secret_id: str
    limited_token: str


@pytest.fixture(scope="session")
def stored(bao: Bao) -> Stored:
    """Kubeconfigs under secret/kubeconfigs/, an AppRole `console`, a token that reads only c1."""
    root = bao.client()
    kube_tokens = {cid: secrets.token_hex(20) for cid in ("c1", "c2", "elsewhere")}
    texts = {cid: yaml.safe_dump(kubeconfig({cid: (f"https://{cid}.example:6443", ca_pem(), tok)},
                                            current=cid))
             for cid, tok in kube_tokens.items()}
    kv = root.secrets.kv.v2
    kv.create_or_update_secret(path="kubeconfigs/c1", secret={"kubeconfig": texts["c1"]},
                               mount_point="secret")
    # c2 is stored base64-encoded, as `bao kv put ... kubeconfig=$(base64 -w0 f)` leaves it.
    kv.create_or_update_secret(path="kubeconfigs/c2", mount_point="secret",
                               secret={"kubeconfig": base64.b64encode(texts["c2"].encode()).decode()})
    kv.create_or_update_secret(path="kubeconfigs/elsewhere", mount_point="secret",
                               secret={"kubeconfig": texts["elsewhere"]})
    kv.create_or_update_secret(path="kubeconfigs/broken", mount_point="secret",
                               secret={"kubeconfig": f"users: [{{token: {kube_tokens['c1']}\n : ]"})
    kv.create_or_update_secret(path="kubeconfigs/nofield", mount_point="secret",
                               secret={"config": "x"})
    root.sys.create_or_update_policy("kubeconfigs-read", READ_ALL)
    root.sys.create_or_update_policy("c1-only", READ_C1)
    root.sys.enable_auth_method("approle")
    root.auth.approle.create_or_update_approle("console", token_policies=["kubeconfigs-read"],
                                               token_ttl="10m")
    role_id = root.auth.approle.read_role_id("console")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("console")["data"]["secret_id"]
    limited = root.auth.token.create(policies=["c1-only"], ttl="1h")["auth"]["client_token"]
    return Stored(kube_tokens, texts, role_id, secret_id, limited)


def vault_cluster(tmp_path, cid: str, vault_block: dict | None = None, **creds):
    """Cluster `cid` of a fleet file whose credentials come from Vault (default path pattern)."""
    creds = {"vault": True, **creds}
    fleet = fleet_config.load(fleet_file(tmp_path, {cid: creds}, vault_block or {}))
    return fleet.cluster(cid), fleet


def test_token_auth_reads_kv2(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    cluster, fleet = vault_cluster(tmp_path, "c1")
    kc = resolve(cluster, fleet)
    assert kc["current-context"] == "c1"
    assert kc["users"][0]["user"]["token"] == stored.kube_tokens["c1"]
    assert kc["clusters"][0]["cluster"]["server"] == "https://c1.example:6443"


def test_base64_kubeconfig_in_vault(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    cluster, fleet = vault_cluster(tmp_path, "c2")
    assert resolve(cluster, fleet)["users"][0]["user"]["token"] == stored.kube_tokens["c2"]


def test_approle_login(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("CI_ROLE", stored.role_id)
    monkeypatch.setenv("CI_SECRET", stored.secret_id)
    # The address comes from the fleet file this time.
    cluster, fleet = vault_cluster(tmp_path, "c2", {"addr": bao.addr, "auth": "approle",
                                                    "role_id_env": "CI_ROLE",
                                                    "secret_id_env": "CI_SECRET"})
    assert resolve(cluster, fleet)["users"][0]["user"]["token"] == stored.kube_tokens["c2"]


def test_approle_logs_in_once_and_again_after_revocation(tmp_path, monkeypatch, bao, stored):
    """A secret id good for two logins serves any number of reads: the token is reused."""
    root = bao.client()
    root.auth.approle.create_or_update_approle("two-uses", token_policies=["kubeconfigs-read"],
                                               secret_id_num_uses=2, token_ttl="10m")
    monkeypatch.setenv("VAULT_ROLE_ID", root.auth.approle.read_role_id("two-uses")["data"]["role_id"])
    monkeypatch.setenv("VAULT_SECRET_ID",
                       root.auth.approle.generate_secret_id("two-uses")["data"]["secret_id"])
    block = {"addr": bao.addr, "auth": "approle"}
    for cid in ("c1", "c2", "c1", "c2"):
        cluster, fleet = vault_cluster(tmp_path, cid, block)
        assert resolve(cluster, fleet)["users"][0]["user"]["token"] == stored.kube_tokens[cid]
    # Revoke every AppRole token: the cached one is refused, and one new login follows.
    root.sys.revoke_prefix("auth/approle/login")
    cluster, fleet = vault_cluster(tmp_path, "c2", block)
    assert resolve(cluster, fleet)["current-context"] == "c2"
    # Both uses of the secret id are spent now: after another revocation login fails.
    root.sys.revoke_prefix("auth/approle/login")
    assert "AppRole login refused" in failure(tmp_path, "c1", block)


def test_vault_addr_env_overrides_the_fleet_file(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    cluster, fleet = vault_cluster(tmp_path, "c1", {"addr": f"http://127.0.0.1:{free_port()}"})
    assert resolve(cluster, fleet)["current-context"] == "c1"


def failure(tmp_path, cid: str, vault_block: dict | None = None, **creds) -> str:
    cluster, fleet = vault_cluster(tmp_path, cid, vault_block, **creds)
    started = time.monotonic()
    with pytest.raises(CredentialsError) as err:
        resolve(cluster, fleet)
    assert time.monotonic() - started < 5, "a Vault failure must not hang"
    message = str(err.value)
    assert f"cluster {cid!r}" in message
    return message


def test_approle_wrong_secret_id(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ROLE_ID", stored.role_id)
    wrong = secrets.token_hex(16)
    monkeypatch.setenv("VAULT_SECRET_ID", wrong)
    message = failure(tmp_path, "c1", {"addr": bao.addr, "auth": "approle"})
    assert "AppRole login refused" in message and "$VAULT_SECRET_ID" in message
    assert wrong not in message and stored.role_id not in message


def test_approle_missing_variables(tmp_path, bao):
    message = failure(tmp_path, "c1", {"addr": bao.addr, "auth": "approle",
                                       "role_id_env": "CI_ROLE", "secret_id_env": "CI_SECRET"})
    assert "AppRole login needs $CI_ROLE and $CI_SECRET set" in message


def test_denied_read_with_limited_policy(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", stored.limited_token)
    cluster, fleet = vault_cluster(tmp_path, "c1")
    assert resolve(cluster, fleet)["current-context"] == "c1"   # its one allowed path
    message = failure(tmp_path, "c2")
    assert "vault secret/kubeconfigs/c2" in message and "permission denied (403)" in message


def test_missing_path(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    message = failure(tmp_path, "c9")
    assert "vault secret/kubeconfigs/c9" in message and "no secret at this path (404)" in message


def test_explicit_path_and_missing_field(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    message = failure(tmp_path, "c1", vault="secret/kubeconfigs/nofield")
    assert "secret/kubeconfigs/nofield" in message
    assert "no 'kubeconfig' field (fields: config)" in message


def test_malformed_kubeconfig_in_vault(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    message = failure(tmp_path, "broken")
    assert "vault secret/kubeconfigs/broken" in message and "malformed kubeconfig" in message
    assert stored.kube_tokens["c1"] not in message


def test_pinned_server_refuses_a_kubeconfig_pointing_elsewhere(tmp_path, monkeypatch, bao, stored):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    message = failure(tmp_path, "elsewhere", server="https://prod.example:6443")
    assert "refused" in message and "https://elsewhere.example:6443" in message


def test_no_token(tmp_path, monkeypatch, bao):
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    assert "no Vault token: set $VAULT_TOKEN" in failure(tmp_path, "c1")


def test_vault_down(tmp_path, monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("VAULT_TOKEN", "t")
    assert "Vault is unreachable" in failure(tmp_path, "c1")


def test_vault_that_never_answers_times_out(tmp_path, monkeypatch):
    with socket.socket() as listener:   # accepts connections (backlog), never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.setenv("VAULT_TOKEN", "t")
        message = failure(tmp_path, "c1", {"timeout": "0.5s"})
    assert "Vault did not answer in time" in message


def test_vault_sealed(tmp_path, monkeypatch, throwaway_bao):
    throwaway_bao.client().secrets.kv.v2.create_or_update_secret(
        path="kubeconfigs/c1", mount_point="secret",
        secret={"kubeconfig": yaml.safe_dump(kubeconfig({"c1": ("https://h:6443", ca_pem(), "t")}))})
    throwaway_bao.cli("operator", "seal")
    monkeypatch.setenv("VAULT_ADDR", throwaway_bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", throwaway_bao.root_token)
    assert "Vault is sealed or unavailable (503)" in failure(tmp_path, "c1")


def test_vault_namespace(tmp_path, monkeypatch, bao, stored):
    root = bao.client()
    root.sys.create_namespace("team-a")
    team = bao.client(namespace="team-a")
    team.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    team.secrets.kv.v2.create_or_update_secret(path="kubeconfigs/c1", mount_point="secret",
                                               secret={"kubeconfig": stored.texts["c2"]})
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
    cluster, fleet = vault_cluster(tmp_path, "c1")
    # The namespace's c1 holds the c2 kubeconfig: proof the read went to team-a.
    assert resolve(cluster, fleet)["users"][0]["user"]["token"] == stored.kube_tokens["c2"]


def test_vault_tls_with_cacert(tmp_path, monkeypatch, tls_bao):
    text = yaml.safe_dump(kubeconfig({"c1": ("https://h:6443", ca_pem(), "tls-token")}))
    tls_bao.client().secrets.kv.v2.create_or_update_secret(
        path="kubeconfigs/c1", mount_point="secret", secret={"kubeconfig": text})
    monkeypatch.setenv("VAULT_ADDR", tls_bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", tls_bao.root_token)
    assert "TLS verification of Vault failed" in failure(tmp_path, "c1")
    monkeypatch.setenv("VAULT_CACERT", str(tls_bao.cacert))
    cluster, fleet = vault_cluster(tmp_path, "c1")
    assert resolve(cluster, fleet)["users"][0]["user"]["token"] == "tls-token"
    # The fleet file's vault.cacert does the same.
    monkeypatch.delenv("VAULT_CACERT")
    cluster, fleet = vault_cluster(tmp_path, "c1", {"cacert": str(tls_bao.cacert)})
    assert resolve(cluster, fleet)["users"][0]["user"]["token"] == "tls-token"


def test_vault_skip_verify_is_refused(tmp_path, monkeypatch, tls_bao):
    """VAULT_SKIP_VERIFY would turn off TLS verification of Vault from the environment,
    where nobody reviews it: refused by name, for kubeconfigs and registry credentials."""
    from console.credentials import read_vault_registry_credentials
    from console.errors import UserError

    text = yaml.safe_dump(kubeconfig({"c1": ("https://h:6443", ca_pem(), "tls-token")}))
    kv = tls_bao.client().secrets.kv.v2
    kv.create_or_update_secret(path="kubeconfigs/c1", mount_point="secret",
                               secret={"kubeconfig": text})
    kv.create_or_update_secret(path="registry/web", mount_point="secret",
                               secret={"username": "u", "password": "registry-pass"})
    monkeypatch.setenv("VAULT_ADDR", tls_bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", tls_bao.root_token)
    for value in ("1", "true", "yes"):
        monkeypatch.setenv("VAULT_SKIP_VERIFY", value)
        message = failure(tmp_path, "c1")
        assert ("cluster 'c1': credentials from vault secret/kubeconfigs/c1: refused: "
                "VAULT_SKIP_VERIFY is set") in message and "VAULT_CACERT" in message
        with pytest.raises(UserError, match="registry credentials from vault secret/registry/"
                                            "web: refused: VAULT_SKIP_VERIFY is set"):
            read_vault_registry_credentials("secret/registry/web")
    # Set but false, with the CA given: verified, and read.
    monkeypatch.setenv("VAULT_SKIP_VERIFY", "false")
    monkeypatch.setenv("VAULT_CACERT", str(tls_bao.cacert))
    cluster, fleet = vault_cluster(tmp_path, "c1")
    assert resolve(cluster, fleet)["users"][0]["user"]["token"] == "tls-token"
    assert read_vault_registry_credentials("secret/registry/web") == ("u", "registry-pass")


def test_no_secret_in_any_error_or_log(tmp_path, monkeypatch, caplog, bao, stored):
    """Every failure path above, once more, with every secret checked against every message."""
    caplog.set_level(logging.DEBUG)
    messages = []

    def collect(cid, env, vault_block=None, **creds):
        for name in ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        cluster, fleet = vault_cluster(tmp_path, cid, vault_block, **creds)
        with pytest.raises(CredentialsError) as err:
            resolve(cluster, fleet)
        messages.extend([str(err.value), repr(err.value), repr(err.value.args)])

    collect("c2", {"VAULT_ADDR": bao.addr, "VAULT_TOKEN": stored.limited_token})
    collect("c9", {"VAULT_ADDR": bao.addr, "VAULT_TOKEN": bao.root_token})
    collect("broken", {"VAULT_ADDR": bao.addr, "VAULT_TOKEN": bao.root_token})
    collect("elsewhere", {"VAULT_ADDR": bao.addr, "VAULT_TOKEN": bao.root_token},
            server="https://x:6443")
    collect("c1", {"VAULT_ADDR": bao.addr, "VAULT_TOKEN": bao.root_token},
            ca_sha256="0" * 64)
    collect("c1", {"VAULT_ROLE_ID": stored.role_id, "VAULT_SECRET_ID": stored.limited_token},
            {"addr": bao.addr, "auth": "approle"})
    collect("c1", {"VAULT_ADDR": bao.addr, "VAULT_TOKEN": secrets.token_hex(16)})
    assert len(messages) == 21
    secrets_seen = [bao.root_token, stored.limited_token, stored.secret_id, stored.role_id,
                    *stored.kube_tokens.values()]
    texts = messages + [record.getMessage() for record in caplog.records]
    for text in texts:
        for secret in secrets_seen:
            assert secret not in text
        for kubeconfig_text in stored.texts.values():
            assert kubeconfig_text[:40] not in text and "certificate-authority-data" not in text


def test_kubeconfig_from_vault_drives_a_simulated_cluster(tmp_path, monkeypatch, bao, sim_fleet):
    """End to end: OpenBao holds the kubeconfig, the pins hold, the cluster answers."""
    from kubernetes import client as k8s

    from console.kube.client import new_api_client

    fleet = sim_fleet(["vaulted"])
    bao.client().secrets.kv.v2.create_or_update_secret(
        path="kubeconfigs/vaulted", mount_point="secret",
        secret={"kubeconfig": yaml.safe_dump(fleet.kubeconfig("vaulted"))})
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    cluster, config = vault_cluster(tmp_path, "vaulted", server=fleet.url("vaulted"),
                                    ca_sha256=fleet.ca_sha256)
    api = new_api_client("vaulted", resolve(cluster, config))
    assert k8s.VersionApi(api).get_code(_request_timeout=5).git_version
    # A wrong CA pin refuses the same kubeconfig before any request is made.
    cluster, config = vault_cluster(tmp_path, "vaulted", ca_sha256="ab" * 32)
    with pytest.raises(CredentialsError, match="refused: the kubeconfig's CA has SHA-256"):
        resolve(cluster, config)
    # Nothing was written where kubectl looks.
    assert not (tmp_path / "home" / ".kube").exists()


def test_check_command_reports_vault_failures_per_cluster(tmp_path, monkeypatch, capsys, bao,
                                                          stored, sim_fleet):
    """`release-console check`: a cluster whose Vault read is denied fails pre-flight, named."""
    from console.cli import main

    fleet = sim_fleet(["good", "denied"])
    path = fleet.write_kubeconfigs(tmp_path / "fleet", config_path=fleet_file(
        tmp_path, {"good": {"kubeconfig": "x"}, "denied": {"kubeconfig": "x"}}))
    data = yaml.safe_load(path.read_text())
    data["clusters"][1]["credentials"] = {"vault": True}
    data["vault"] = {"addr": bao.addr}
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("VAULT_TOKEN", stored.limited_token)   # may read kubeconfigs/c1 only
    code = main(["check", "--tag", "1.0", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 2
    denied = [line for line in out.splitlines() if line.startswith("denied ")]
    assert any("FAIL" in line and "cluster 'denied': credentials from vault "
               "secret/kubeconfigs/denied" in line and "permission denied (403)" in line
               for line in denied), out
    assert any(line.startswith("good ") and " ok " in line for line in out.splitlines()), out
    assert stored.limited_token not in out and fleet.admin_token("good") not in out
