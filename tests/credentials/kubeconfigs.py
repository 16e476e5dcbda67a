"""Test helpers: self-signed CA certificates, kubeconfig texts and fleet files."""

from __future__ import annotations

import base64
import datetime
import hashlib
import textwrap
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def ca_pem(name: str = "test-ca") -> bytes:
    """A fresh self-signed CA certificate, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def sha256_of(pem: bytes) -> str:
    """The SHA-256 fingerprint (hex) of a PEM certificate's DER form."""
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def kubeconfig(contexts: dict[str, tuple[str, bytes, str]], current: str | None = None,
               exec_user: str | None = None) -> dict:
    """A kubeconfig with one cluster and user per context: name -> (server, CA PEM, token)."""
    data: dict = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
                  "contexts": []}
    for name, (server, pem, token) in contexts.items():
        data["clusters"].append({"name": f"{name}-cluster", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(pem).decode()}})
        user: dict = {"token": token}
        if exec_user == name:
            user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                             "command": "/usr/local/bin/get-token", "args": ["--secret", token]}}
        data["users"].append({"name": f"{name}-user", "user": user})
        data["contexts"].append({"name": name, "context": {
            "cluster": f"{name}-cluster", "user": f"{name}-user", "namespace": "default"}})
    if current:
        data["current-context"] = current
    return data


def fleet_file(directory: Path, credentials: dict[str, dict], vault: dict | None = None) -> Path:
    """A minimal clusters.yaml in `directory` whose clusters have the given credentials blocks."""
    (directory / "deploy").mkdir(exist_ok=True)
    (directory / "deploy" / "deployment.yaml").write_text(textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: "${app}", namespace: "${namespace}"}
        spec:
          replicas: ${replicas}
          selector: {matchLabels: {app: "${app}"}}
          template:
            metadata: {labels: {app: "${app}"}}
            spec:
              containers: [{name: "${app}", image: "${image}", resources: "${resources}"}]
        """))
    doc: dict = {
        "app": {"name": "web", "image": "registry.example.com/apps/web", "manifests": "deploy",
                "namespace": "{cluster}"},
        "defaults": {"values": {"replicas": 1, "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"}}}},
        "clusters": [{"id": cid, "credentials": creds} for cid, creds in credentials.items()],
    }
    if vault is not None:
        doc["vault"] = vault
    path = directory / "clusters.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
