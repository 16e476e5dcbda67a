"""The lab's certificates: one CA per lab, a serving certificate for every kube-apiserver
(all listen on 127.0.0.1), client certificates for the admin and the control-plane
components, and the service-account signing key.

EC P-256 everywhere keeps start-up fast; kube-apiserver accepts ES256 for service-account
tokens. Keys are written 0600 in the lab's private directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from console.sim.tls import make_ca

PEM = serialization.Encoding.PEM

# Client identities: (file stem, common name, organisation). system:masters is the admin
# group; the controller-manager and scheduler get their own users, which the default RBAC
# policy of kube-apiserver already binds (system:kube-controller-manager, system:kube-scheduler).
CLIENTS = (
    ("admin", "release-console-lab-admin", "system:masters"),
    ("controller-manager", "system:kube-controller-manager", ""),
    ("scheduler", "system:kube-scheduler", ""),
    ("kwok", "release-console-lab-kwok", "system:masters"),
)


@dataclass(frozen=True)
class LabPKI:
    """File paths of the lab's certificates and keys (all under one private directory)."""

    directory: Path

    def path(self, name: str) -> Path:
        """`ca.crt`, `server.crt`, `admin.key`, `sa.pub`..."""
        return self.directory / name

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (PEM)."""
        return self.path("ca.crt").read_bytes()

    @property
    def ca_der_sha256(self) -> str:
        """SHA-256 (hex) of the CA certificate in DER form, as `ca_sha256` pins spell it."""
        return x509.load_pem_x509_certificate(self.ca_pem).fingerprint(hashes.SHA256()).hex()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate(directory: Path) -> LabPKI:
    """A fresh CA, serving certificate, client certificates and SA key in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = dt.datetime.now(dt.timezone.utc)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=30)
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "release-console lab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "release-console lab CA")])
    ca_key, ca, ca_ski = make_ca(ca_name, start, end)
    _write(directory / "ca.crt", ca.public_bytes(PEM), private=False)
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)

    def issue(stem: str, subject: x509.Name, usage: x509.ObjectIdentifier,
              sans: list[x509.GeneralName] | None = None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(aki, critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(directory / f"{stem}.crt", cert.public_bytes(PEM), private=False)
        _write(directory / f"{stem}.key", _key_pem(key), private=True)

    # The first service IP (10.0.0.1) is the in-cluster `kubernetes` service address.
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                                    x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc")]
    issue("server", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
          ExtendedKeyUsageOID.SERVER_AUTH, sans)
    for stem, cn, org in CLIENTS:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
        issue(stem, x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
              ExtendedKeyUsageOID.CLIENT_AUTH)
    sa = ec.generate_private_key(ec.SECP256R1())
    _write(directory / "sa.key", _key_pem(sa), private=True)
    _write(directory / "sa.pub", sa.public_key().public_bytes(
        PEM, serialization.PublicFormat.SubjectPublicKeyInfo), private=False)
    return LabPKI(directory)
