"""Real CNCF distribution registries (Debian's `docker-registry`) on 127.0.0.1, and image pushes.

Images are pushed through the registry's own HTTP API (blob uploads, then the manifest),
so the tests need no Docker daemon.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.servers import die_with_parent, free_port, stop_server, wait_until_up
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

START_TIMEOUT = 20.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def bcrypt_htpasswd(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash (the only kind the registry accepts).

    `htpasswd -B` (apache2-utils) when installed, else the `bcrypt` Python package.
    """
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True,
                             text=True, check=True, timeout=30)
        return out.stdout.strip()
    try:
        import bcrypt
    except ModuleNotFoundError:
        raise RuntimeError("the htpasswd registry needs `htpasswd` (apache2-utils) or the "
                           "`bcrypt` Python package") from None
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}"


@dataclass
class Registry:
    """A running registry: `host` is `127.0.0.1:PORT`; `auth` the push credentials, if any."""

    host: str
    process: subprocess.Popen
    auth: tuple[str, str] | None = None
    token: str | None = None  # a bearer token for pushes (token-auth registries)
    pushed: dict[str, str] = field(default_factory=dict)  # "name:tag" -> manifest digest
    ca_file: Path | None = None  # set when it serves TLS: the CA that verifies it

    @property
    def url(self) -> str:
        """The registry's base URL."""
        return f"{'https' if self.ca_file else 'http'}://{self.host}"

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10,
                            verify=_trust(self.ca_file),
                            auth=httpx.BasicAuth(*self.auth) if self.auth else None,
                            headers={"Authorization": f"Bearer {self.token}"} if self.token else None)

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
        stop_server(self.process)


def _trust(ca_file: Path | None) -> ssl.SSLContext | bool:
    """httpx's `verify` for a registry: its CA when it serves TLS from a test CA."""
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else True


def start_registry(workdir: Path, auth: dict | None = None,
                   address: str = "127.0.0.1",
                   tls: tuple[Path, Path, Path] | None = None) -> Registry:
    """`docker-registry serve config.yml` on a free port of `address` (loopback unless
    told), storage in `workdir`, until it answers; over TLS with `tls` = (certificate,
    key, CA file)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is missing: apt-get install docker-registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"{address}:{port}", "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = auth
    if tls:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(workdir / "config.yml")], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                               preexec_fn=die_with_parent)
    log.close()
    registry = Registry(host=f"{address}:{port}", process=process,
                        ca_file=tls[2] if tls else None)
    verify = _trust(tls[2] if tls else None)
    wait_until_up("docker-registry", process, workdir / "registry.log",
                  lambda: httpx.get(f"{registry.url}/v2/", timeout=1.0,
                                    verify=verify).status_code in (200, 401),
                  registry.stop, START_TIMEOUT)
    return registry


def registry_fleet(tmp_path: Path, host: str, registry: dict) -> Path:
    """A one-cluster clusters.yaml whose app image lives on `host`, with `app.registry`."""
    (tmp_path / "deploy").mkdir(exist_ok=True)
    (tmp_path / "deploy" / "d.yaml").write_text("kind: Deployment\n")
    path = tmp_path / "clusters.yaml"
    path.write_text(json.dumps({
        "app": {"name": "web", "image": f"{host}/apps/web", "manifests": "deploy",
                "registry": registry},
        "clusters": [{"id": "c1", "credentials": {"kubeconfig": "/nonexistent"}}]}))
    return path


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


# --------------------------------------------------------------------------- token auth


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """A Docker token service (the registry's `auth.token` realm) signing ES256 JWTs.

    Grants what the scope asks when the basic credentials are right; an anonymous request
    gets a token with no access, as Docker Hub answers for a private repository.
    """

    user: str
    password: str
    issuer: str = "test-issuer"
    service: str = "test-registry"
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .sign(self.key, hashes.SHA256()))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        """The token endpoint."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def root_pem(self) -> bytes:
        """The certificate the registry trusts for token signatures."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def mint(self, access: list[dict]) -> str:
        """A signed JWT granting `access` ([{type, name, actions}])."""
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": self.user, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(),
                                                  ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                query = parse_qs(urlsplit(self.path).query)
                header = self.headers.get("Authorization", "")
                service.requests.append({"scope": query.get("scope", [""])[0],
                                         "service": query.get("service", [""])[0],
                                         "basic": header.startswith("Basic ")})
                access: list[dict] = []
                if header.startswith("Basic "):
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if (user, password) != (service.user, service.password):
                        self.send_response(401)
                        self.end_headers()
                        return
                    for scope in query.get("scope", []):
                        kind, name, actions = scope.split(":")
                        access.append({"type": kind, "name": name, "actions": actions.split(",")})
                token = service.mint(access)
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory) -> Iterator[tuple[Registry, TokenService]]:
    """A registry with token (Bearer) auth and its token service, holding `apps/web:3.0`."""
    workdir = tmp_path_factory.mktemp("registry-token")
    tokens = TokenService("robot", secrets.token_urlsafe(12))
    (workdir / "token-root.pem").write_bytes(tokens.root_pem())
    server = start_registry(workdir, {"token": {
        "realm": tokens.realm, "service": tokens.service, "issuer": tokens.issuer,
        "rootcertbundle": str(workdir / "token-root.pem")}})
    server.token = tokens.mint([{"type": "repository", "name": "apps/web",
                                 "actions": ["pull", "push"]}])
    server.push_image("apps/web", "3.0", "oci")
    tokens.requests.clear()
    yield server, tokens
    server.stop()
    tokens.stop()
