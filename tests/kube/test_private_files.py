"""The client's credential files: one call path builds clients, and a killed console's
files do not outlive it (issue 10 item 5, issue 11 item 4)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from console.kube import private_files
from tests.engine.conftest import REPO, world  # noqa: F401 - fixture

CONSOLE = REPO / "console"


def test_only_the_kube_package_builds_api_clients():
    """One way to a cluster: `console.kube.client.new_api_client` (with the production
    retry settings); nothing else loads a kubeconfig into a client."""
    builders = re.compile(r"new_client_from_config_dict|load_kube_config|\bApiClient\(")
    found = [f"{path.relative_to(REPO)}:{n}"
             for path in CONSOLE.rglob("*.py")
             if "kube" not in path.relative_to(CONSOLE).parts[:1]
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if builders.search(line.split("#")[0]) and not line.lstrip().startswith(("`", '"'))]
    assert found == []


def client_key_pair() -> tuple[bytes, bytes]:
    """A (self-signed) client certificate and its private key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "console")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_killed_consoles_key_files_are_swept_by_the_next_command(world, tmp_path):  # noqa: F811
    ids = ["a", "b"]
    w = world(ids, readiness_delay=30.0, jitter=0.0)
    cert_pem, key_pem = client_key_pair()
    for cid in ids:
        # Token auth, plus a client certificate: the client writes both files out.
        path = w.config_path.parent / f"{cid}.yaml"
        data = yaml.safe_load(path.read_text())
        data["users"][0]["user"].update({
            "client-certificate-data": base64.b64encode(cert_pem).decode(),
            "client-key-data": base64.b64encode(key_pem).decode()})
        path.write_text(yaml.safe_dump(data))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "RELEASE_CONSOLE_CONFIG": str(w.config_path)}
    proc = subprocess.Popen([sys.executable, "-m", "console", "deploy", "--tag", "v2", "--json",
                             "--strategy", "parallel"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith("{") and json.loads(line)["kind"] == "cluster_started":
                break
            assert time.monotonic() < deadline, "the release never started"
        else:
            raise AssertionError(f"the console ended early: {proc.wait()} {proc.stderr.read()}")
        left = files_holding(scratch, key_pem)
        assert left, "the client wrote no key file"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert all(p.exists() for p in left)           # SIGKILL: nobody removed them
    status = subprocess.run([sys.executable, "-m", "console", "status"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert status.returncode in (0, 4), status.stderr
    # The next command swept the dead console's directory, and removed its own at exit.
    assert not any(p.exists() for p in left)
    assert list(scratch.iterdir()) == []


def test_the_sweep_leaves_live_and_unknown_owners_alone(tmp_path):
    me = private_files.this_process()
    sleeper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)
    try:
        started = private_files.start_time(sleeper.pid)
        assert started is not None
        live = private_files.Owner(me.boot, me.pidns, sleeper.pid, started)
        reused = private_files.Owner(me.boot, me.pidns, sleeper.pid, started + 1)   # pid reuse
        container = private_files.Owner(me.boot, me.pidns + 1, 1, 1)   # another pid namespace
        rebooted = private_files.Owner("f" * 32, me.pidns, me.pid, me.start)
        dirs = {}
        for name, owner in {"live": live, "reused": reused, "container": container,
                            "rebooted": rebooted, "mine": me}.items():
            dirs[name] = tmp_path / f"{owner.prefix()}x{name}"
            dirs[name].mkdir()
            (dirs[name] / "client.key").write_text("key")
        (tmp_path / "release-console-old").mkdir()       # an unknown name: left alone
        removed = private_files.sweep_dead(tmp_path)
        assert sorted(removed) == sorted([dirs["reused"], dirs["rebooted"]])
        assert dirs["live"].exists() and dirs["container"].exists() and dirs["mine"].exists()
        assert (tmp_path / "release-console-old").exists()
    finally:
        sleeper.communicate(timeout=30)
    # Its owner gone, the live one's directory goes too.
    assert private_files.sweep_dead(tmp_path) == [dirs["live"]]
