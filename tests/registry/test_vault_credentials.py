"""Registry credentials fetched from Vault/OpenBao (`app.registry.vault`), against a real
OpenBao dev server and a real docker-registry with htpasswd auth."""

from __future__ import annotations

import json

from console import config as fleet_config
from console.preflight.release import check_image
from tests.credentials.conftest import bao, clean_vault_env  # noqa: F401 - fixtures


def _fleet(tmp_path, host: str, bao_addr: str, path: str):
    (tmp_path / "deploy").mkdir(exist_ok=True)
    (tmp_path / "deploy" / "d.yaml").write_text("kind: Deployment\n")
    fleet = tmp_path / "clusters.yaml"
    fleet.write_text(json.dumps({
        "app": {"name": "web", "image": f"{host}/apps/web", "manifests": "deploy",
                "registry": {"vault": path}},
        "vault": {"addr": bao_addr},
        "clusters": [{"id": "c1", "credentials": {"kubeconfig": "/nonexistent"}}]}))
    return fleet_config.load(fleet)


def test_registry_credentials_from_vault(auth_registry, bao, monkeypatch, tmp_path):
    user, password = auth_registry.auth
    bao.client().secrets.kv.v2.create_or_update_secret(
        path="registry/web", mount_point="secret",
        secret={"username": user, "password": password})
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    config = _fleet(tmp_path, auth_registry.host, bao.addr, "secret/registry/web")

    found = check_image(config, "2.0")
    assert found.ok, found.detail
    missing = check_image(config, "2.1")
    assert not missing.ok and "not found" in missing.detail


def test_missing_vault_secret_names_the_path_and_no_secret(auth_registry, bao, monkeypatch,
                                                           tmp_path):
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    config = _fleet(tmp_path, auth_registry.host, bao.addr, "secret/registry/absent")
    result = check_image(config, "2.0")
    assert not result.ok
    assert "secret/registry/absent" in result.detail and "404" in result.detail
    assert bao.root_token not in result.detail

    bao.client().secrets.kv.v2.create_or_update_secret(
        path="registry/half", mount_point="secret", secret={"username": "only-a-name"})
    half = check_image(_fleet(tmp_path, auth_registry.host, bao.addr, "secret/registry/half"),
                       "2.0")
    assert not half.ok and "'username' and 'password'" in half.detail
