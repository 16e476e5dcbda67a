"""The lab's certificates (console.lab.pki), without starting a cluster: a path-length-0
CA of the lab's own name that verifies the serving and every client certificate, and
private keys only the owner may read."""

from __future__ import annotations

import stat

from cryptography import x509

from console.lab import pki


def test_the_lab_ca_signs_the_server_and_every_client_certificate(tmp_path):
    lab = pki.generate(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(lab.ca_pem)
    assert ca.subject == ca.issuer
    assert ca.subject.rfc4514_string() == "CN=release-console lab CA,O=release-console lab"
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    for stem in ["server", *(stem for stem, _, _ in pki.CLIENTS)]:
        cert = x509.load_pem_x509_certificate(lab.path(f"{stem}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)    # raises when the CA did not sign it
        assert stat.S_IMODE(lab.path(f"{stem}.key").stat().st_mode) == 0o600
