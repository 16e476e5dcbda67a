"""Notifications to a real local webhook receiver and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from pathlib import Path

import pytest

from console.config import EmailConfig, NotifyConfig
from console.events import Event, Kind
from console.notify import Notification, Notifier, NotifyListener
from tests.history.conftest import free_port

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def release_events(outcome: str, failures: dict[str, str]) -> list[Event]:
    """The events of a release of user-service 1.4.0 to staging and prod-eu."""
    rid = "rel-1"
    events = [Event(Kind.RELEASE_PLANNED, rid, data={
                  "app": "user-service", "version": "1.4.0", "image": "reg/user-service",
                  "strategy": "parallel", "targets": ["staging", "prod-eu"], "waves": [],
                  "operator": "alice"}),
              Event(Kind.RELEASE_STARTED, rid)]
    for cluster, error in failures.items():
        events.append(Event(Kind.CLUSTER_FAILED, rid, cluster=cluster,
                            data={"error": error, "duration": 3.0}))
    events.append(Event(Kind.RELEASE_FINISHED, rid, data={"outcome": outcome,
                                                          "exit_code": 1 if failures else 0}))
    return events


def email_to(port: int, **kwargs) -> EmailConfig:
    kwargs.setdefault("starttls", False)
    return EmailConfig(to=("ops@example.com",), sender="release-console@example.com",
                       host="127.0.0.1", port=port, timeout=5.0, **kwargs)


def test_a_failed_release_reaches_the_webhook_and_the_mailbox(webhook, smtp_server) -> None:
    settings = NotifyConfig(on=("failure",), slack_webhook=webhook.url,
                            email=email_to(smtp_server.port))
    listener = NotifyListener(Notifier(settings, app="user-service"))
    for event in release_events("failed", {
            "prod-eu": f"ImagePullBackOff: pull failed with Bearer {TOKEN} " + "x" * 600}):
        listener(event)
    deliveries = listener.close(timeout=20)

    assert [(d.channel, d.ok) for d in deliveries] == [("webhook", True), ("email", True)]
    [body] = webhook.bodies
    assert (body["app"], body["version"], body["release"], body["outcome"]) == (
        "user-service", "1.4.0", "rel-1", "failed")
    assert body["failed_clusters"] == ["prod-eu"]
    excerpt = body["errors"]["prod-eu"]
    assert excerpt.startswith("ImagePullBackOff: pull failed with Bearer ***")
    assert len(excerpt) <= 300 and TOKEN not in str(body)
    assert "user-service 1.4.0: release failed on prod-eu" in body["text"]
    [(sender, recipients, message)] = smtp_server.messages
    assert (sender, recipients) == ("release-console@example.com", ["ops@example.com"])
    assert "Subject: [release-console] user-service 1.4.0: release failed on prod-eu" in message
    assert "- prod-eu: ImagePullBackOff" in message and TOKEN not in message


def test_success_and_gates_only_when_configured(webhook) -> None:
    quiet = NotifyListener(Notifier(NotifyConfig(on=("failure",), slack_webhook=webhook.url),
                                    app="user-service"))
    for event in release_events("ok", {}):
        quiet(event)
    assert quiet.close(timeout=10) == [] and webhook.bodies == []

    chatty = NotifyListener(Notifier(NotifyConfig(on=("success", "gate"),
                                                  slack_webhook=webhook.url),
                                     app="user-service"))
    events = release_events("ok", {})
    events.insert(2, Event(Kind.GATE_WAITING, "rel-1", data={"wave": 1,
                                                             "clusters": ["prod-eu"]}))
    for event in events:
        chatty(event)
    assert [d.ok for d in chatty.close(timeout=10)] == [True, True]
    assert [(b["event"], b["outcome"]) for b in webhook.bodies] == [
        ("gate", "gate_waiting"), ("success", "ok")]
    assert webhook.bodies[0]["text"].startswith(
        "user-service 1.4.0: approval needed before prod-eu")


def test_the_webhook_url_can_come_from_the_environment(webhook, monkeypatch) -> None:
    settings = NotifyConfig(on=("failure",), slack_webhook_env="RC_TEST_WEBHOOK")
    note = Notification(event="failure", app="user-service", version="1.4.0",
                        release_id="rel-1", outcome="failed", failed=(("a", "boom"),))
    [missing] = Notifier(settings, app="user-service").send(note)
    assert not missing.ok and "$RC_TEST_WEBHOOK is not set" in missing.detail
    monkeypatch.setenv("RC_TEST_WEBHOOK", webhook.url)
    [sent] = Notifier(settings, app="user-service").send(note)
    assert sent.ok and webhook.bodies[0]["failed_clusters"] == ["a"]


def test_notifier_failures_are_reported_never_raised_nor_blocking(webhook) -> None:
    webhook.status = 500
    dead_port = free_port()
    settings = NotifyConfig(on=("failure",), slack_webhook=webhook.url,
                            email=email_to(dead_port))
    reports: list = []
    listener = NotifyListener(Notifier(settings, app="user-service"), on_result=reports.append)
    for event in release_events("failed", {"prod-eu": "boom"}):
        listener(event)
    deliveries = listener.close(timeout=20)
    assert [(d.channel, d.ok) for d in deliveries] == [("webhook", False), ("email", False)]
    assert deliveries[0].detail == "webhook: HTTP 500 no_service"
    assert "email via 127.0.0.1:" in deliveries[1].detail
    assert "Connection refused" in deliveries[1].detail or "Errno" in deliveries[1].detail
    assert reports == [deliveries]
    assert all(webhook.url not in d.detail for d in deliveries)


def test_a_slow_webhook_times_out_without_holding_up_the_release(webhook) -> None:
    webhook.delay = 3.0
    settings = NotifyConfig(on=("failure",), slack_webhook=webhook.url, timeout=0.5)
    listener = NotifyListener(Notifier(settings, app="user-service"))
    began = time.monotonic()
    for event in release_events("failed", {"prod-eu": "boom"}):
        listener(event)
    assert time.monotonic() - began < 0.2      # the engine's thread is not held up
    [delivery] = listener.close(timeout=20)
    assert not delivery.ok and delivery.detail == "webhook: no answer within 0.5 s"


def make_tls_context(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1: the server context and the CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server TLS context whose certificate the client trusts (via $SSL_CERT_FILE)."""
    context, ca_file = make_tls_context(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    return context


def test_email_with_starttls_and_login(tls, monkeypatch) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    received: list[str] = []
    logins: list[str] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received.append(envelope.content.decode())
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret-pass"
        if ok:
            logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=tls,
                            require_starttls=True, authenticator=authenticator,
                            auth_require_tls=True)
    controller.start()
    try:
        monkeypatch.setenv("RC_SMTP_USER", "mailer")
        settings = NotifyConfig(on=("failure",), email=email_to(
            port, starttls=True, username_env="RC_SMTP_USER", password_env="RC_SMTP_PASS"))
        note = Notification(event="failure", app="user-service", version="1.4.0",
                            release_id="rel-1", outcome="failed", failed=(("a", "boom"),))
        [unset] = Notifier(settings, app="user-service").send(note)
        assert not unset.ok and unset.detail == "email: $RC_SMTP_PASS is not set"
        monkeypatch.setenv("RC_SMTP_PASS", "wrong-pass")
        [refused] = Notifier(settings, app="user-service").send(note)
        assert not refused.ok and "SMTPAuthenticationError" in refused.detail
        assert "wrong-pass" not in refused.detail
        monkeypatch.setenv("RC_SMTP_PASS", "s3cret-pass")
        [sent] = Notifier(settings, app="user-service").send(note)
        assert sent.ok, sent.detail
        assert logins == ["mailer"]
        assert "release failed on a" in received[0]
    finally:
        controller.stop()
