"""`image_exists` against real registries: found, missing, media types, basic auth, credentials."""

from __future__ import annotations

import base64
import json
import secrets
import time

import httpx
import pytest

from console import config as fleet_config
from console.registry import ACCEPT, Reference, image_exists, parse_challenge
from tests.registry.conftest import OCI_MANIFEST, free_port, registry_fleet


def test_oci_manifest_found_with_digest(registry):
    result = image_exists(f"{registry.host}/apps/web", "1.0")
    assert result.ok and result.status == 200
    assert result.digest == registry.pushed["apps/web:1.0"]
    assert f"{registry.host}/apps/web:1.0 exists" in result.detail


def test_oci_index_and_docker_manifest_found(registry):
    for tag in ("1.1", "0.9"):
        result = image_exists(f"{registry.host}/apps/web", tag)
        assert result.ok, result.detail
        assert result.digest == registry.pushed[f"apps/web:{tag}"]


def test_missing_tag_and_repository(registry):
    result = image_exists(f"{registry.host}/apps/web", "9.9")
    assert not result.ok and result.status == 404
    assert result.detail == f"{registry.host}/apps/web:9.9 not found in the registry"
    assert not image_exists(f"{registry.host}/apps/nothing", "1.0").ok


def test_registry_hides_oci_images_without_oci_accept(registry):
    """Why the Accept header matters: without OCI types this registry says 404."""
    url = f"{registry.url}/v2/apps/web/manifests/1.0"
    bare = httpx.head(url, timeout=5)
    docker_only = httpx.head(url, timeout=5, headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    ours = httpx.head(url, timeout=5, headers={"Accept": ACCEPT})
    assert (bare.status_code, docker_only.status_code, ours.status_code) == (404, 404, 200)
    assert ours.headers["content-type"] == OCI_MANIFEST


def test_basic_auth_from_env_vars(auth_registry, monkeypatch, tmp_path):
    user, password = auth_registry.auth
    monkeypatch.setenv("REG_USER", user)
    monkeypatch.setenv("REG_PASS", password)
    fleet = fleet_config.load(registry_fleet(tmp_path, auth_registry.host, {
        "username_env": "REG_USER", "password_env": "REG_PASS"}))
    result = image_exists(fleet.app.image, "2.0", fleet.app.registry)
    assert result.ok, result.detail
    assert result.digest == auth_registry.pushed["apps/web:2.0"]
    assert not image_exists(fleet.app.image, "2.1", fleet.app.registry).ok


def test_basic_auth_from_docker_config(auth_registry, monkeypatch, tmp_path):
    user, password = auth_registry.auth
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (docker_dir / "config.json").write_text(json.dumps(
        {"auths": {f"http://{auth_registry.host}/v1/": {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    result = image_exists(f"{auth_registry.host}/apps/web", "2.0")
    assert result.ok, result.detail
    # The fleet file may name the file instead.
    monkeypatch.delenv("DOCKER_CONFIG")
    fleet = fleet_config.load(registry_fleet(tmp_path, auth_registry.host,
                                     {"auth_file": str(docker_dir / "config.json")}))
    assert image_exists(fleet.app.image, "2.0", fleet.app.registry).ok


def test_basic_auth_explicit_credentials_and_refusals(auth_registry, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config.json there
    image = f"{auth_registry.host}/apps/web"
    assert image_exists(image, "2.0", credentials=auth_registry.auth).ok
    anonymous = image_exists(image, "2.0")
    assert not anonymous.ok and anonymous.status == 401
    assert "needs credentials" in anonymous.detail
    wrong = secrets.token_urlsafe(10)
    refused = image_exists(image, "2.0", credentials=(auth_registry.auth[0], wrong))
    assert not refused.ok and "refused the credentials (401)" in refused.detail
    assert wrong not in refused.detail and auth_registry.auth[1] not in refused.detail


def test_unreachable_registry_is_quick(tmp_path):
    started = time.monotonic()
    result = image_exists(f"127.0.0.1:{free_port()}/apps/web", "1.0")
    assert not result.ok and result.status is None
    assert "unreachable" in result.detail
    assert time.monotonic() - started < 5


def test_reference_parsing():
    assert Reference.parse("registry.example.com/apps/web") == \
        Reference("registry.example.com", "apps/web")
    assert Reference.parse("127.0.0.1:5000/web") == Reference("127.0.0.1:5000", "web")
    assert Reference.parse("localhost/a/b") == Reference("localhost", "a/b")
    assert Reference.parse("nginx") == Reference("registry-1.docker.io", "library/nginx")
    assert Reference.parse("bitnami/redis") == Reference("registry-1.docker.io", "bitnami/redis")


def test_bearer_challenge_with_credentials(token_registry, monkeypatch, tmp_path):
    registry, tokens = token_registry
    monkeypatch.setenv("REG_USER", tokens.user)
    monkeypatch.setenv("REG_PASS", tokens.password)
    fleet = fleet_config.load(registry_fleet(tmp_path, registry.host, {
        "username_env": "REG_USER", "password_env": "REG_PASS"}))
    result = image_exists(fleet.app.image, "3.0", fleet.app.registry)
    assert result.ok, result.detail
    assert result.digest == registry.pushed["apps/web:3.0"]
    # The scope and service came from the registry's challenge; credentials went along.
    assert tokens.requests == [{"scope": "repository:apps/web:pull", "service": "test-registry",
                                "basic": True}]
    missing = image_exists(fleet.app.image, "3.1", fleet.app.registry)
    assert not missing.ok and missing.status == 404


def test_bearer_challenge_refusals(token_registry, monkeypatch, tmp_path):
    registry, tokens = token_registry
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config.json there
    image = f"{registry.host}/apps/web"
    wrong = secrets.token_urlsafe(10)
    refused = image_exists(image, "3.0", credentials=(tokens.user, wrong))
    assert not refused.ok and refused.status == 401
    assert "the token service 127.0.0.1:" in refused.detail
    assert "refused the credentials (401)" in refused.detail and wrong not in refused.detail
    # Anonymous: the token service answers, but the token grants nothing.
    anonymous = image_exists(image, "3.0")
    assert not anonymous.ok and "needs credentials" in anonymous.detail


def test_challenge_parsing():
    header = ('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
              'scope="repository:apps/web:pull,push"')
    assert parse_challenge(header) == {"scheme": "bearer", "realm": "https://auth.example.com/token",
                                       "service": "registry.example.com",
                                       "scope": "repository:apps/web:pull,push"}
    assert parse_challenge('Basic realm="Registry Realm"') == {"scheme": "basic",
                                                              "realm": "Registry Realm"}


def test_a_tls_problem_is_told_by_the_exceptions_type(registry):
    """The hint comes from the ssl error under httpx's, never from the message's words: a
    plain-HTTP port spoken to over HTTPS is a failed handshake, not a certificate to
    trust (registry.ca_file would not help); a closed port is no TLS problem at all."""
    from console.registry import _transport_problem

    def problem(url: str) -> str:
        with pytest.raises(httpx.TransportError) as caught:
            httpx.head(url, timeout=10.0)
        return _transport_problem(caught.value)

    told = problem(f"https://{registry.host}/v2/")
    assert told.startswith("TLS handshake failed (") and "ca_file" not in told, told
    assert problem(f"http://127.0.0.1:{free_port()}/v2/") == \
        "connection refused or host unknown"
