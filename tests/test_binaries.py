"""Which helm (or etcd, kube-apiserver, ...) the console runs: the pinned builds win over
whatever else is on PATH; an explicit $RELEASE_CONSOLE_BIN wins over both."""

from __future__ import annotations

from pathlib import Path

import pytest

import console.binaries as binaries


def program(folder: Path, name: str = "helm") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def places(tmp_path, monkeypatch):
    on_path = program(tmp_path / "path")
    pinned = program(tmp_path / "checkout")
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.delenv("RELEASE_CONSOLE_BIN", raising=False)
    monkeypatch.setattr(binaries, "CHECKOUT_BIN", tmp_path / "checkout")
    return on_path, pinned


def test_the_pinned_build_wins_over_another_on_path(places) -> None:
    _, pinned = places
    assert binaries.find("helm") == pinned


def test_an_explicit_folder_wins_over_the_pinned_build(places, tmp_path, monkeypatch) -> None:
    chosen = program(tmp_path / "chosen")
    monkeypatch.setenv("RELEASE_CONSOLE_BIN", str(tmp_path / "chosen"))
    assert binaries.find("helm") == chosen


def test_path_is_used_without_a_checkout_build(places, tmp_path, monkeypatch) -> None:
    on_path, _ = places
    monkeypatch.setattr(binaries, "CHECKOUT_BIN", tmp_path / "none")
    assert binaries.find("helm") == on_path
    assert binaries.find("no-such-program") is None
