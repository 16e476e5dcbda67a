"""`app.registry.insecure` (issue 11, item 2): plain HTTP and unverified TLS only for a
loopback registry, or for the host the fleet file names - and never Basic credentials
over plain HTTP to another machine. Against a real htpasswd `docker-registry` listening
on this machine's non-loopback address."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest

from console import config as fleet_config
from console.errors import ConfigError
from console.registry import image_exists
from tests.registry.conftest import Registry, bcrypt_htpasswd, registry_fleet, start_registry


def outbound_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("198.51.100.1", 9))   # TEST-NET-2: routing only
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def remote_registry(tmp_path_factory) -> Iterator[Registry]:
    """An htpasswd registry on the non-loopback address, plain HTTP, holding apps/web:2.0."""
    address = outbound_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    workdir = tmp_path_factory.mktemp("registry-remote")
    user, password = "deployer", secrets.token_urlsafe(12)
    (workdir / "htpasswd").write_text(bcrypt_htpasswd(user, password) + "\n")
    server = start_registry(workdir, {"htpasswd": {"realm": "remote", "path": str(
        workdir / "htpasswd")}}, address=address)
    server.auth = (user, password)
    server.push_image("apps/web", "2.0", "oci")
    yield server
    server.stop()


def credentials_in_env(monkeypatch, registry: Registry) -> dict:
    """The registry's credentials in REG_USER/REG_PASS; the `app.registry` keys naming them."""
    user, password = registry.auth
    monkeypatch.setenv("REG_USER", user)
    monkeypatch.setenv("REG_PASS", password)
    return {"username_env": "REG_USER", "password_env": "REG_PASS"}


def test_insecure_true_is_for_loopback_registries_only(remote_registry, tmp_path):
    with pytest.raises(ConfigError) as err:
        fleet_config.load(registry_fleet(tmp_path, remote_registry.host, {"insecure": True}))
    assert (f"app.registry.insecure: true applies to a loopback registry only, and "
            f"app.image's registry is {remote_registry.host}: name the host") in str(err.value)
    with pytest.raises(ConfigError, match="is not app.image's registry host"):
        fleet_config.load(registry_fleet(tmp_path, remote_registry.host, {"insecure": "other:5000"}))


def test_named_host_gets_plain_http_but_never_basic_credentials(remote_registry, tmp_path,
                                                                monkeypatch):
    password = remote_registry.auth[1]
    config = fleet_config.load(registry_fleet(tmp_path, remote_registry.host, {
        "insecure": remote_registry.host, **credentials_in_env(monkeypatch, remote_registry)}))
    result = image_exists(config.app.image, "2.0", config.app.registry)
    # The registry answered over plain HTTP (named: allowed) with a Basic challenge; the
    # password stays here (with it, the registry would have said 200).
    assert not result.ok and result.status == 401
    assert result.detail == (f"{remote_registry.host}/apps/web:2.0: not sending credentials "
                             f"over plain HTTP to {remote_registry.host} (serve the registry "
                             "over HTTPS)")
    assert password not in result.detail
    # Anonymous reads of a named host work over plain HTTP.
    monkeypatch.delenv("REG_PASS")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))     # no config.json there
    anonymous = image_exists(config.app.image, "2.0", config.app.registry)
    assert anonymous.status == 401 and "needs credentials" in anonymous.detail


def test_loopback_registry_still_takes_basic_credentials_over_http(auth_registry, tmp_path,
                                                                   monkeypatch):
    config = fleet_config.load(registry_fleet(tmp_path, auth_registry.host, {
        "insecure": True, **credentials_in_env(monkeypatch, auth_registry)}))
    assert image_exists(config.app.image, "2.0", config.app.registry).ok
