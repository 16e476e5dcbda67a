"""A certificate authority per fleet and one serving certificate for 127.0.0.1/localhost.

EC P-256 keys keep start-up fast; the server context offers ALPN `http/1.1` only, as the
simulator speaks no HTTP/2.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class ServesCA:
    """The CA of a local fleet, as clients pin it: for a fleet (the simulator's, the lab's)
    whose `_started_ca()` is its TLS material once started (`ca_pem`, `ca_der_sha256`)."""

    def _started_ca(self) -> FleetTLS:
        raise NotImplementedError

    @property
    def ca_pem(self) -> bytes:
        """The fleet CA certificate (PEM)."""
        return self._started_ca().ca_pem

    @property
    def ca_sha256(self) -> str:
        """SHA-256 (hex) of the CA certificate's DER form, as `ca_sha256` pins spell it."""
        return self._started_ca().ca_der_sha256


@dataclass(frozen=True)
class FleetTLS:
    """PEM material of one fleet: the CA certificate and the server's certificate and key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_der_sha256(self) -> str:
        """SHA-256 (hex) of the CA certificate in DER form."""
        cert = x509.load_pem_x509_certificate(self.ca_pem)
        return cert.fingerprint(hashes.SHA256()).hex()

    def server_context(self) -> ssl.SSLContext:
        """A server-side SSL context with the serving certificate and ALPN http/1.1."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain only reads files: go through a private temporary directory.
        with tempfile.TemporaryDirectory(prefix="sim-tls-") as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert.write_bytes(self.cert_pem + self.ca_pem)
            key.write_bytes(self.key_pem)
            key.chmod(0o600)
            ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client SSL context trusting this fleet's CA (for tests and tools)."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "release-console sim"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(name: x509.Name, start: dt.datetime, end: dt.datetime
            ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, x509.SubjectKeyIdentifier]:
    """(key, certificate, subject key id) of a new self-signed P-256 CA that signs
    certificates only (path length 0); the lab's PKI makes its CA here too."""
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256()))
    return key, cert, ski


def generate(hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> FleetTLS:
    """A fresh CA and a serving certificate for `hosts` (IP addresses or DNS names)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_name = _name("release-console sim CA")
    ca_key, ca_cert, ca_ski = make_ca(ca_name, now - dt.timedelta(hours=1),
                                      now + dt.timedelta(days=365))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return FleetTLS(
        ca_pem=ca_cert.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
