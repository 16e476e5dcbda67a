"""The default tag in a real Git repository: deploy, plan and check without `--tag` use
`<short commit>-<build>`, print it, and build a missing image only when asked to."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from console.cli import main
from tests.engine.conftest import REPO
from tests.fleets import git, one_commit_repository
from tests.integration.conftest import built_by

BUILD = textwrap.dedent("""\
    import os, sys
    sys.path.insert(0, {repo!r})
    from tests.registry.conftest import Registry
    print("building", os.environ["RELEASE_IMAGE"])
    Registry(host={host!r}, process=None).push_image("apps/user-service",
                                                     os.environ["RELEASE_TAG"])
    """)


@pytest.fixture
def app_world(world, registry, tmp_path, monkeypatch):
    """A fleet whose clusters.yaml sits in an app repository (a real Git repo with one
    commit), the image on the real registry, and a build command that pushes it."""
    commit = one_commit_repository(tmp_path)
    w = built_by(world(["a", "b"]), registry, tmp_path, BUILD)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    return w, commit, registry.host


def test_plan_check_and_deploy_without_tag(app_world, capsys, monkeypatch):
    w, commit, host = app_world
    config = str(w.config_path)

    monkeypatch.setenv("BUILD_NUMBER", "7")
    assert main(["plan", "--config", config, "--json"]) == 0
    captured = capsys.readouterr()
    assert f"using {commit}-7 " in captured.err and "$BUILD_NUMBER" in captured.err
    assert {c["new_version"] for c in json.loads(captured.out)["clusters"]} == {f"{commit}-7"}
    monkeypatch.delenv("BUILD_NUMBER")

    # No build number and an empty ledger: build 1. Its image is not there: suggested only.
    assert main(["check", "--config", config]) == 2
    captured = capsys.readouterr()
    assert f"using {commit}-1 " in captured.err
    assert "not in the registry" in captured.err and "--build" in captured.err
    image_row = next(line for line in captured.out.splitlines() if " image " in line)
    assert "FAIL" in image_row

    # deploy --build runs the build (tag in the environment), then releases that image.
    assert main(["deploy", "--config", config, "--build", "--strategy", "parallel"]) == 0
    captured = capsys.readouterr()
    assert f"build: building {host}/apps/user-service:{commit}-1" in captured.err
    assert (w.version("a"), w.version("b")) == (f"{commit}-1", f"{commit}-1")

    # The next default is the ledger's next number; its image is missing and, headless
    # without --build or --yes, nothing is built and nothing is touched (exit 2).
    assert main(["deploy", "--config", config]) == 2
    captured = capsys.readouterr()
    assert f"using {commit}-2 " in captured.err and "run again with --build (or --yes)" \
        in captured.err
    assert (w.version("a"), w.version("b")) == (f"{commit}-1", f"{commit}-1")

    # --yes builds as well; an explicit --tag is used as given, and never built unasked.
    assert main(["deploy", "--config", config, "--yes"]) == 0
    assert w.version("a") == f"{commit}-2"
    capsys.readouterr()
    assert main(["deploy", "--config", config, "--tag", f"{commit}-1"]) == 0
    assert "no --tag given" not in capsys.readouterr().err


def test_outside_a_git_repository_deploy_asks_for_a_tag(world, capsys, tmp_path):
    w = world(["a"])
    # Neither the fleet file nor the manifests are in a Git repository (pytest's tmp dirs
    # live outside any): the manifests are copied out of the checkout, which would
    # otherwise give its commit (the fallback the demo's rewritten fleet file relies on).
    manifests = tmp_path / "manifests"
    shutil.copytree(REPO / "deploy" / "user-service", manifests)
    w = w.edited(lambda doc: doc["app"].update(manifests=str(manifests)))
    assert main(["deploy", "--config", str(w.config_path)]) == 2
    assert "not in a Git repository with a commit" in capsys.readouterr().err
    assert w.version("a") is None
    assert main(["plan", "--config", str(w.config_path)]) == 0    # a plan needs no version
    assert "(no --tag)" in capsys.readouterr().out
