"""Kubeconfig files and environment variables as credential sources, and the pins."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
import yaml

from console import config as fleet_config
from console.credentials import CredentialsError, allowances_in_use, resolve
from tests.credentials.kubeconfigs import ca_pem, fleet_file, kubeconfig, sha256_of


@pytest.fixture()
def two_contexts(tmp_path):
    """A kubeconfig file with contexts `a` and `b` (current: a), their CAs and tokens."""
    ca_a, ca_b = ca_pem("a"), ca_pem("b")
    tok_a, tok_b = secrets.token_hex(16), secrets.token_hex(16)
    data = kubeconfig({"a": ("https://10.0.0.1:6443", ca_a, tok_a),
                       "b": ("https://10.0.0.2:6443", ca_b, tok_b)}, current="a")
    path = tmp_path / "kube" / "both.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    return path, (ca_a, tok_a), (ca_b, tok_b)


def load_one(tmp_path, creds: dict, vault: dict | None = None):
    fleet = fleet_config.load(fleet_file(tmp_path, {"c1": creds}, vault))
    return fleet.cluster("c1"), fleet


def test_file_source_keeps_only_the_chosen_context(tmp_path, two_contexts):
    path, _, (_, tok_b) = two_contexts
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path), "context": "b"})
    kc = resolve(cluster, fleet)
    assert kc["current-context"] == "b"
    assert [c["name"] for c in kc["contexts"]] == ["b"]
    assert [c["cluster"]["server"] for c in kc["clusters"]] == ["https://10.0.0.2:6443"]
    assert kc["users"] == [{"name": "b-user", "user": {"token": tok_b}}]


def test_file_source_defaults_to_current_context(tmp_path, two_contexts):
    path, (_, tok_a), _ = two_contexts
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path)})
    kc = resolve(cluster, fleet)
    assert kc["current-context"] == "a" and kc["users"][0]["user"]["token"] == tok_a


def test_relative_file_references_become_absolute(tmp_path):
    data = {"clusters": [{"name": "c", "cluster": {"server": "https://h:6443",
                                                  "certificate-authority": "ca.crt"}}],
            "users": [{"name": "u", "user": {"client-certificate": "u.crt",
                                             "client-key": "/abs/u.key"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}
    path = tmp_path / "kc" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path)})
    kc = resolve(cluster, fleet)
    assert kc["clusters"][0]["cluster"]["certificate-authority"] == str(path.parent / "ca.crt")
    assert kc["users"][0]["user"]["client-certificate"] == str(path.parent / "u.crt")
    assert kc["users"][0]["user"]["client-key"] == "/abs/u.key"


def test_missing_context_names_cluster_file_and_contexts(tmp_path, two_contexts):
    path, _, _ = two_contexts
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path), "context": "zz"})
    with pytest.raises(CredentialsError) as err:
        resolve(cluster, fleet)
    message = str(err.value)
    assert "'c1'" in message and str(path) in message and "'zz' not found" in message
    assert "contexts: a, b" in message


def test_missing_file(tmp_path):
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(tmp_path / "nope.yaml")})
    with pytest.raises(CredentialsError, match=r"cluster 'c1'.*nope\.yaml: file not found"):
        resolve(cluster, fleet)


@pytest.mark.parametrize("encode", [lambda t: t, lambda t: base64.b64encode(t.encode()).decode()],
                         ids=["yaml", "base64"])
def test_env_source_yaml_or_base64(tmp_path, monkeypatch, two_contexts, encode):
    path, _, (_, tok_b) = two_contexts
    monkeypatch.setenv("KC_C1", encode(path.read_text()))
    cluster, fleet = load_one(tmp_path, {"env": "KC_C1", "context": "b"})
    kc = resolve(cluster, fleet)
    assert kc["current-context"] == "b" and kc["users"][0]["user"]["token"] == tok_b


def test_env_source_naming_a_file(tmp_path, monkeypatch, two_contexts):
    path, (_, tok_a), _ = two_contexts
    monkeypatch.setenv("KC_C1", str(path))
    cluster, fleet = load_one(tmp_path, {"env": "KC_C1"})
    assert resolve(cluster, fleet)["users"][0]["user"]["token"] == tok_a


def test_env_source_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("KC_C1", raising=False)
    cluster, fleet = load_one(tmp_path, {"env": "KC_C1"})
    with pytest.raises(CredentialsError, match=r"cluster 'c1'.*\$KC_C1: the variable is not set"):
        resolve(cluster, fleet)


def test_malformed_kubeconfig_never_echoes_its_text(tmp_path, monkeypatch):
    secret = secrets.token_hex(16)
    # Broken YAML whose error would quote the line holding the token.
    monkeypatch.setenv("KC_C1", f"users:\n- name: u\n  user: {{token: {secret}\n  : ]\n")
    cluster, fleet = load_one(tmp_path, {"env": "KC_C1"})
    with pytest.raises(CredentialsError) as err:
        resolve(cluster, fleet)
    assert "malformed kubeconfig" in str(err.value) and "line" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value)
    # A plain word is neither YAML mapping nor base64 of one.
    monkeypatch.setenv("KC_C1", f"not-a-kubeconfig-{secret}")
    with pytest.raises(CredentialsError, match="malformed kubeconfig") as err:
        resolve(cluster, fleet)
    assert secret not in str(err.value)


def test_server_pin(tmp_path, two_contexts):
    path, _, _ = two_contexts
    # Same URL spelled differently (default port, trailing slash, case) passes.
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path), "context": "b",
                                         "server": "https://10.0.0.2:6443/"})
    assert resolve(cluster, fleet)["current-context"] == "b"
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path), "context": "a",
                                         "server": "https://10.0.0.2:6443"})
    with pytest.raises(CredentialsError, match=r"refused: the kubeconfig points at "
                                               r"https://10\.0\.0\.1:6443.*pins"):
        resolve(cluster, fleet)


def test_ca_pin(tmp_path, two_contexts):
    path, (ca_a, _), (ca_b, _) = two_contexts
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path), "context": "a",
                                         "ca_sha256": sha256_of(ca_a)})
    assert resolve(cluster, fleet)["current-context"] == "a"
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path), "context": "b",
                                         "ca_sha256": sha256_of(ca_a)})
    with pytest.raises(CredentialsError, match=f"refused: the kubeconfig's CA has SHA-256 "
                                               f"{sha256_of(ca_b)}"):
        resolve(cluster, fleet)


def test_ca_pin_refuses_skip_verify(tmp_path, two_contexts):
    path, (ca_a, _), _ = two_contexts
    data = yaml.safe_load(path.read_text())
    data["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    path.write_text(yaml.safe_dump(data))
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path), "ca_sha256": sha256_of(ca_a)})
    with pytest.raises(CredentialsError, match="skips TLS verification"):
        resolve(cluster, fleet)


def test_exec_plugin_refused_unless_allowed(tmp_path):
    token = secrets.token_hex(16)
    data = kubeconfig({"a": ("https://h:6443", ca_pem(), token)}, current="a", exec_user="a")
    path = tmp_path / "exec.yaml"
    path.write_text(yaml.safe_dump(data))
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path)})
    with pytest.raises(CredentialsError) as err:
        resolve(cluster, fleet)
    assert "exec credential plugin (get-token)" in str(err.value) and "allow_exec" in str(err.value)
    assert token not in str(err.value)
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path), "allow_exec": True})
    assert resolve(cluster, fleet)["users"][0]["user"]["exec"]["command"] == "/usr/local/bin/get-token"
    # Allowed, and named for `check`.
    assert allowances_in_use()["c1"] == (
        "runs the exec credential plugin get-token (allowed by credentials.allow_exec)",)


@pytest.mark.parametrize("field", ["client-certificate", "client-key"])
def test_a_file_and_inline_data_for_the_same_thing_are_refused(tmp_path, field):
    data = kubeconfig({"a": ("https://h:6443", ca_pem(), "t")}, current="a")
    data["users"][0]["user"] = {field: str(tmp_path / "x.pem"),
                                f"{field}-data": base64.b64encode(b"x").decode()}
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(data))
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(path)})
    with pytest.raises(CredentialsError, match=f"cluster 'c1'.*both.yaml: refused: the "
                                               f"kubeconfig gives both {field} and {field}-data"):
        resolve(cluster, fleet)
    assert "c1" not in allowances_in_use()


def test_client_files_land_in_a_private_directory(tmp_path, monkeypatch):
    """Certificate and key data the client needs as files: 0600, in a 0700 directory of ours."""
    import stat

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from console.kube.client import new_api_client
    from console.kube.private_files import private_dir

    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = ca_pem("client")
    data = kubeconfig({"a": ("https://127.0.0.1:6443", ca_pem(), "unused")}, current="a")
    data["users"][0]["user"] = {
        "client-certificate-data": base64.b64encode(cert_pem).decode(),
        "client-key-data": base64.b64encode(key_pem).decode()}
    monkeypatch.setenv("KC_C1", yaml.safe_dump(data))
    cluster, fleet = load_one(tmp_path, {"env": "KC_C1"})
    api = new_api_client("c1", resolve(cluster, fleet))
    directory = private_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in (api.configuration.cert_file, api.configuration.key_file,
                 api.configuration.ssl_ca_cert):
        assert Path(path).parent == directory
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    assert Path(api.configuration.key_file).read_bytes() == key_pem


def test_wrong_kinds_of_file_are_refused_quickly(tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(fifo)})
    with pytest.raises(CredentialsError, match="fifo: not a regular file"):
        resolve(cluster, fleet)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (2 * 1024 * 1024))
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(huge)})
    with pytest.raises(CredentialsError, match="larger than 1024 KiB"):
        resolve(cluster, fleet)
    cluster, fleet = load_one(tmp_path, {"kubeconfig": str(tmp_path)})
    with pytest.raises(CredentialsError, match="is a directory"):
        resolve(cluster, fleet)
