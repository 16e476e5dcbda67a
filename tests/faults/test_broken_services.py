"""Broken services around a release: Vault sealed or down, the image registry down, the
history remote refusing pushes. Clear errors, no secret in them, nothing lost."""

from __future__ import annotations

import yaml

from console.cli import main
from tests.faults.conftest import (events_of, outcomes, releases, secrets_of, stored,
                                   vault_fleet, writes)
from tests.history.conftest import git, reject_pushes, remote_records
from tests.registry.conftest import start_registry
from tests.servers import free_port


def deploy(config_path, tag: str, *more: str) -> int:
    return main(["deploy", "--config", str(config_path), "--tag", tag, "--strategy",
                 "parallel", "--json", *more])


def assert_refused_untouched(w, capsys, code: int, *secrets: str) -> str:
    """Exit 2, pre-flight failed, no cluster written, no secret printed; the output."""
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2, text
    events = events_of(captured.out)
    assert events[-1]["outcome"] == "preflight_failed"
    assert not [e for e in events if e["kind"] == "cluster_started"]
    for cid in w.fleet.ids:
        assert writes(w.fleet, cid) == 0
    for secret in secrets:
        assert secret not in text
    return text


def test_vault_sealed_clear_error_nothing_touched_no_secret(world, throwaway_bao, tmp_path,
                                                           monkeypatch, capsys):
    w = world(["a", "b"])
    path, texts = vault_fleet(w, throwaway_bao, tmp_path)
    monkeypatch.setenv("VAULT_TOKEN", throwaway_bao.root_token)
    throwaway_bao.cli("operator", "seal")
    text = assert_refused_untouched(w, capsys, deploy(path, "v1"),
                                    *secrets_of(texts, throwaway_bao.root_token))
    assert "Vault is sealed or unavailable (503)" in text
    assert "secret/kubeconfigs/a" in text           # names the source, never the content
    assert w.version("a") is None and w.version("b") is None


def test_vault_down_clear_error_nothing_touched(world, bao, tmp_path, monkeypatch, capsys):
    w = world(["a", "b"])
    path, texts = vault_fleet(w, bao, tmp_path, addr=f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    text = assert_refused_untouched(w, capsys, deploy(path, "v1"),
                                    *secrets_of(texts, bao.root_token))
    assert "Vault is unreachable" in text


def test_registry_down_clear_error_nothing_touched(world, tmp_path, capsys):
    w = world(["a", "b"])
    (tmp_path / "registry").mkdir()
    registry = start_registry(tmp_path / "registry")
    try:
        registry.push_image("apps/user-service", "v1")
        doc = yaml.safe_load(w.config_path.read_text())
        doc["app"]["image"] = f"{registry.host}/apps/user-service"
        doc["app"]["registry"] = {"insecure": True, "timeout": "2s"}
        w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        assert deploy(w.config_path, "v1") == 0, capsys.readouterr()
        capsys.readouterr()
        baseline = {cid: stored(w.fleet, cid) for cid in w.fleet.ids}
    finally:
        registry.stop()
    code = deploy(w.config_path, "v1")
    captured = capsys.readouterr()
    assert code == 2
    events = events_of(captured.out)
    failures = next(e for e in events if e["kind"] == "preflight_finished")["failures"]
    assert [f["check"] for f in failures] == ["image"]
    assert registry.host in failures[0]["detail"]
    assert any(word in failures[0]["detail"].lower() for word in ("unreachable", "refused"))
    assert {cid: stored(w.fleet, cid) for cid in w.fleet.ids} == baseline


def test_history_remote_rejecting_pushes_loses_nothing(world, bare_remote, capsys):
    w = world(["a", "b"])
    doc = yaml.safe_load(w.config_path.read_text())
    doc["app"]["history"]["remote"] = str(bare_remote)
    w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert deploy(w.config_path, "v1") == 0
    capsys.readouterr()
    reject_pushes(bare_remote)
    # The release itself does not depend on the remote: it succeeds and says what failed.
    assert deploy(w.config_path, "v2") == 0
    captured = capsys.readouterr()
    rejected_id = events_of(captured.out)[-1]["release"]
    assert "history is frozen for maintenance" in captured.err
    from console.config import load
    config = load(w.config_path)
    local = releases(config)
    assert outcomes(local[rejected_id]) == {"a": "healthy", "b": "healthy"}
    assert rejected_id not in {r.get("release") or r.get("id") for r in remote_records(bare_remote)}
    # The remote accepts pushes again: the next release pushes both; nothing was lost.
    reject_pushes(bare_remote, reject=False)
    assert deploy(w.config_path, "v3") == 0
    on_remote = remote_records(bare_remote)
    ids = {r.get("release") or r.get("id") for r in on_remote}
    assert set(local) <= ids
    assert [r["outcome"] for r in on_remote
            if r.get("release") == rejected_id and r["type"] == "cluster"] == ["healthy", "healthy"]
    assert git(bare_remote, "log", "--oneline", "main").count("\n") >= 3


def test_history_remote_down_with_credentials_in_its_url_never_prints_them(world, capsys):
    w = world(["a"])
    secret = "s3cr3t-t0ken-do-not-print"
    doc = yaml.safe_load(w.config_path.read_text())
    doc["app"]["history"]["remote"] = f"http://ci-bot:{secret}@127.0.0.1:{free_port()}/h.git"
    w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert deploy(w.config_path, "v1") == 0
    captured = capsys.readouterr()
    assert "push" in captured.err and "failed" in captured.err
    assert secret not in captured.out + captured.err
    from console.config import load
    record = [r for r in releases(load(w.config_path)).values() if r.version == "v1"]
    assert len(record) == 1 and outcomes(record[0]) == {"a": "healthy"}
    # Nor in the ledger's files (the remote URL lives in .git/config, which is not pushed).
    history = w.config.app.history.path
    for path in (history / "history").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
