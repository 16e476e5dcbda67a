"""Default tags from a real Git repository, and the build offered when the image is missing."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from console import config as fleet_config
from console.errors import UserError
from console.registry import image_exists
from console.version_tag import (IMAGE_ENV, TAG_ENV, build_offer, default_tag,
                                 next_build_number, run_build)
from tests.fleets import git, one_commit_repository

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def app_repo(tmp_path) -> Path:
    repo = tmp_path / "app"
    repo.mkdir()
    one_commit_repository(repo)
    return repo


def test_default_tag_uses_build_number(app_repo):
    commit = git(app_repo, "rev-parse", "--short", "HEAD")
    assert default_tag(app_repo, env={"BUILD_NUMBER": "42"}) == f"{commit}-42"


def test_default_tag_takes_the_next_number_from_history(app_repo):
    commit = git(app_repo, "rev-parse", "--short", "HEAD")
    history = ["abc1234-3", "v1.0", "deadbeef-11", "not-a-number", "1234567-x"]
    assert default_tag(app_repo, history, env={"BUILD_NUMBER": ""}) == f"{commit}-12"
    assert default_tag(app_repo, [], env={}) == f"{commit}-1"
    assert next_build_number(["abc1234-9", "abc1234-10"]) == 11


def test_default_tag_outside_git(tmp_path):
    with pytest.raises(UserError, match="not in a Git repository.*pass --tag"):
        default_tag(tmp_path, env={})


def fleet_with_build(tmp_path, host: str, command: str | None):
    (tmp_path / "deploy").mkdir(exist_ok=True)
    (tmp_path / "deploy" / "d.yaml").write_text("kind: Deployment\n")
    app = {"name": "built", "image": f"{host}/apps/built", "manifests": "deploy"}
    if command:
        app["build"] = {"command": command}
    path = tmp_path / "clusters.yaml"
    path.write_text(json.dumps({"app": app, "clusters": [
        {"id": "c1", "credentials": {"kubeconfig": "/nonexistent"}}]}))
    return fleet_config.load(path)


def test_missing_image_offers_the_build_which_pushes_it(tmp_path, registry):
    """The build command gets the tag and image in the environment and makes the image exist."""
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(f"""\
        import os, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from tests.registry.conftest import Registry
        print("building", os.environ[{IMAGE_ENV!r}])
        Registry(host={registry.host!r}, process=None).push_image(
            "apps/built", os.environ[{TAG_ENV!r}])
        print("pushed")
        """))
    config = fleet_with_build(tmp_path, registry.host, f"{sys.executable} build.py")
    check = image_exists(config.app.image, "7f3e2a1-5", config.app.registry)
    assert check.status == 404
    offer = build_offer(config, "7f3e2a1-5", check)
    assert offer is not None and offer.command.endswith("build.py")
    assert offer.env == {TAG_ENV: "7f3e2a1-5", IMAGE_ENV: f"{registry.host}/apps/built:7f3e2a1-5"}
    lines: list[str] = []
    result = run_build(offer, timeout=60, on_line=lines.append)
    assert result.ok, result.output_tail
    assert lines == [f"building {registry.host}/apps/built:7f3e2a1-5", "pushed"]
    assert image_exists(config.app.image, "7f3e2a1-5", config.app.registry).ok
    # Now the image is there: nothing to offer.
    assert build_offer(config, "7f3e2a1-5",
                       image_exists(config.app.image, "7f3e2a1-5", config.app.registry)) is None


def test_no_offer_without_command_or_when_the_registry_is_unreachable(tmp_path, registry):
    config = fleet_with_build(tmp_path, registry.host, None)
    assert build_offer(config, "9.9.9", image_exists(config.app.image, "9.9.9")) is None
    unreachable = fleet_with_build(tmp_path, "127.0.0.1:1", "true")
    check = image_exists(unreachable.app.image, "9.9.9", unreachable.app.registry)
    assert check.status is None and build_offer(unreachable, "9.9.9", check) is None


def test_failing_and_hanging_builds(tmp_path, registry):
    config = fleet_with_build(tmp_path, registry.host, "echo compiling; echo broken >&2; exit 3")
    offer = build_offer(config, "x-1", image_exists(config.app.image, "x-1"))
    result = run_build(offer, timeout=30)
    assert not result.ok and result.returncode == 3
    assert result.output_tail == "compiling\nbroken"
    assert result.detail == "the build command exited with 3"
    hanging = fleet_with_build(tmp_path, registry.host, "sleep 30")
    started = time.monotonic()
    result = run_build(build_offer(hanging, "x-1", image_exists(hanging.app.image, "x-1")),
                       timeout=0.5)
    assert not result.ok and "longer than 0.5 s" in result.detail
    assert time.monotonic() - started < 5


def test_the_app_repository_of_a_rewritten_fleet_file_is_the_checkout(app_repo, tmp_path):
    # The demo rewrites the fleet file into a temporary directory (no Git there); the
    # manifests stay in the checkout, whose commit names the default tag.
    from console.version_tag import app_repository
    manifests = app_repo / "deploy"
    manifests.mkdir()
    (manifests / "deployment.yaml").write_text("kind: Deployment\n")
    fleet = ("app: {{name: web, image: registry.example.com/web, manifests: {m}}}\n"
             "clusters: [{{id: a, credentials: {{kubeconfig: a.yaml}}}}]\n")
    elsewhere = tmp_path / "demo-tmp"
    elsewhere.mkdir()
    (elsewhere / "a.yaml").write_text("{}\n")
    (elsewhere / "clusters.yaml").write_text(fleet.format(m=manifests))
    config = fleet_config.load(elsewhere / "clusters.yaml")
    assert app_repository(config) == manifests
    commit = git(app_repo, "rev-parse", "--short", "HEAD")
    assert default_tag(app_repository(config), env={"BUILD_NUMBER": "7"}) == f"{commit}-7"
    # A fleet file in the app repository is the repository, as before.
    (app_repo / "a.yaml").write_text("{}\n")
    (app_repo / "clusters.yaml").write_text(fleet.format(m=manifests))
    assert app_repository(fleet_config.load(app_repo / "clusters.yaml")) == app_repo
