"""Real CNCF distribution registries (Debian's `docker-registry`) on 127.0.0.1, and image pushes.

Images are pushed through the registry's own HTTP API (blob uploads, then the manifest),
so the tests need no Docker daemon.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

START_TIMEOUT = 20.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bcrypt_htpasswd(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash (the only kind the registry accepts).

    `htpasswd -B` (apache2-utils) when installed, else the `bcrypt` Python package.
    """
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True,
                             text=True, check=True, timeout=30)
        return out.stdout.strip()
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}"


@dataclass
class Registry:
    """A running registry: `host` is `127.0.0.1:PORT`; `auth` the push credentials, if any."""

    host: str
    process: subprocess.Popen
    auth: tuple[str, str] | None = None
    pushed: dict[str, str] = field(default_factory=dict)  # "name:tag" -> manifest digest

    @property
    def url(self) -> str:
        """The registry's base URL."""
        return f"http://{self.host}"

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10,
                            auth=httpx.BasicAuth(*self.auth) if self.auth else None)

    def push_blob(self, client: httpx.Client, name: str, data: bytes) -> dict:
        """Upload one blob (monolithic: POST for a location, then PUT with the digest)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = client.post(f"/v2/{name}/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = start.headers["location"]
        sep = "&" if "?" in location else "?"
        done = client.put(f"{location}{sep}digest={digest}", content=data,
                          headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
        return {"digest": digest, "size": len(data)}

    def push_manifest(self, client: httpx.Client, name: str, reference: str, media_type: str,
                      manifest: dict) -> tuple[str, int]:
        """PUT a manifest under a tag or digest; returns (digest, size)."""
        body = json.dumps(manifest).encode()
        answer = client.put(f"/v2/{name}/manifests/{reference}", content=body,
                            headers={"Content-Type": media_type})
        assert answer.status_code == 201, answer.text
        return answer.headers["docker-content-digest"], len(body)

    def push_image(self, name: str, tag: str, kind: str = "oci") -> str:
        """Push a one-layer image as an OCI manifest, an OCI index, or a Docker v2 manifest."""
        with self._client() as client:
            layer = self.push_blob(client, name, secrets.token_bytes(64))
            config = self.push_blob(client, name, json.dumps(
                {"architecture": "amd64", "os": "linux",
                 "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
            if kind == "docker":
                manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                       **config},
                            "layers": [{"mediaType":
                                        "application/vnd.docker.image.rootfs.diff.tar.gzip", **layer}]}
                digest, _ = self.push_manifest(client, name, tag, DOCKER_MANIFEST, manifest)
            else:
                manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                       **config},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                        **layer}]}
                if kind == "oci":
                    digest, _ = self.push_manifest(client, name, tag, OCI_MANIFEST, manifest)
                else:  # an index pointing at the manifest, pushed by digest first
                    body = json.dumps(manifest).encode()
                    by_digest = "sha256:" + hashlib.sha256(body).hexdigest()
                    m_digest, size = self.push_manifest(client, name, by_digest, OCI_MANIFEST,
                                                        manifest)
                    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                        {"mediaType": OCI_MANIFEST, "digest": m_digest, "size": size,
                         "platform": {"architecture": "amd64", "os": "linux"}}]}
                    digest, _ = self.push_manifest(client, name, tag, OCI_INDEX, index)
        self.pushed[f"{name}:{tag}"] = digest
        return digest

    def stop(self) -> None:
        """Stop the registry and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_registry(workdir: Path, auth: dict | None = None) -> Registry:
    """`docker-registry serve config.yml` on a free port, storage in `workdir`, until it answers."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is missing: apt-get install docker-registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = auth
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(workdir / "config.yml")], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    log.close()
    registry = Registry(host=f"127.0.0.1:{port}", process=process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}: "
                               f"{(workdir / 'registry.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{registry.url}/v2/", timeout=1.0).status_code in (200, 401):
                return registry
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError("docker-registry did not answer within 20 s")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Iterator[Registry]:
    """An open registry with `apps/web:1.0` (OCI manifest), `:1.1` (OCI index), `:0.9` (Docker v2)."""
    server = start_registry(tmp_path_factory.mktemp("registry"))
    server.push_image("apps/web", "1.0", "oci")
    server.push_image("apps/web", "1.1", "index")
    server.push_image("apps/web", "0.9", "docker")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory) -> Iterator[Registry]:
    """A registry with htpasswd (basic) auth, holding `apps/web:2.0`."""
    workdir = tmp_path_factory.mktemp("registry-auth")
    user, password = "deployer", secrets.token_urlsafe(12)
    (workdir / "htpasswd").write_text(bcrypt_htpasswd(user, password) + "\n")
    server = start_registry(workdir, {"htpasswd": {"realm": "test-registry",
                                                   "path": str(workdir / "htpasswd")}})
    server.auth = (user, password)
    server.push_image("apps/web", "2.0", "oci")
    yield server
    server.stop()
