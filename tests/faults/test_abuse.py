"""Hostile input: random fleet files and command lines (hypothesis), names that try to
reach a shell or a path, and kubeconfigs that point elsewhere or run a program. Every case
ends in a clear error (exit 2) or a valid plan - never a traceback, never a partial write."""

from __future__ import annotations

import base64
import os
import shlex
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console import config as fleet_config
from console.cli import main
from console.errors import UserError
from console.names import validate_dns_label, validate_tag
from console.plan import build_plan, select
from tests.faults.conftest import events_of, stored, tree

# FAULTS_EXAMPLES=600 for a deeper search than the suite's default.
SETTINGS = settings(max_examples=int(os.environ.get("FAULTS_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# --- random fleet files --------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True), st.text(max_size=30),
                    st.sampled_from(["", "~", "10%", "-1", "1e309", "30s", "prod-*", "!a",
                                     "../../etc/passwd", "$(touch pwned)", "a\nb", "é" * 300,
                                     "x" * 5000, "{cluster}", "{{cluster}}", "rest"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)
KEYS = {
    "app": ["name", "image", "manifests", "namespace", "rollout_timeout", "history", "notify",
            "registry", "build"],
    "cluster": ["id", "groups", "credentials", "values", "sim", "production", "namespace"],
    "credentials": ["kubeconfig", "context", "env", "vault", "server", "ca_sha256",
                    "allow_exec"],
    "strategy": ["waves", "gates", "max_failures", "max_parallel"],
}


@st.composite
def fleet_docs(draw) -> object:
    """Mostly well-shaped fleet files with a few wrong values (so they get past the first
    check), sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    def part(kind: str, base: dict) -> dict:
        doc = dict(base)
        for key in draw(st.lists(st.sampled_from(KEYS[kind]), max_size=3)):
            doc[key] = draw(values)
        return doc
    ids = draw(st.lists(st.sampled_from(["a", "b", "prod-eu", "prod-us", "A", "x" * 70, "-a",
                                          "a.b", "é"]), min_size=0, max_size=4))
    clusters = [part("cluster", {"id": cid, "groups": draw(st.sampled_from(
        [["fleet"], ["prod"], [], "prod", [1]])),
        "credentials": part("credentials", {"kubeconfig": f"{cid}.yaml"})}) for cid in ids]
    doc: dict = {"app": part("app", {"name": "web", "image": "registry.example.com/apps/web",
                                     "manifests": "deploy"}),
                 "clusters": clusters}
    if draw(st.booleans()):
        doc["strategies"] = {draw(st.text(max_size=8)): part("strategy", {"waves": draw(values)})}
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["defaults", "order", "sim", "vault", "extra"]))] = draw(values)
    return doc


TRICKS = [
    # Billion laughs: aliases that expand exponentially.
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\napp: *g\nclusters: *g\n",
    "app: {name: web, name: evil}\nclusters: []\n",                       # duplicate keys
    "app: {name: web, image: r.example.com/a/web, manifests: deploy}\n"
    "clusters: [{id: a, credentials: {kubeconfig: a.yaml}}, {id: a, credentials: {kubeconfig: a.yaml}}]\n",
    "app: &x {name: web, image: r.example.com/a/web, manifests: deploy, history: *x}\n",
    "!!python/object/apply:os.system ['touch pwned']\n",
    "app: !!binary aGVsbG8=\n",
    "\x00\x01\x02",
    "app: {name: web}\n" + "clusters:\n" + "".join(f"  - id: c{i}\n" for i in range(3000)),
    "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "\ufeffapp: {name: wéb}\n",
    "app:\n\tname: web\n",
    "---\napp: {}\n---\napp: {}\n",
]


def check_load(directory: Path, text: str | bytes) -> None:
    """Load `text` as clusters.yaml: a FleetConfig whose plans work, or a ConfigError that
    names the file - never anything else."""
    path = directory / "clusters.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    try:
        config = fleet_config.load(path)
    except UserError as exc:
        message = str(exc)
        assert "clusters.yaml" in message and "Traceback" not in message
        assert len(message) < 2000          # a huge value is shown cut, not dumped
        return
    for strategy in ("serial", "parallel", *config.strategies):
        try:
            plan = build_plan(config, select(config, ""), strategy)
        except UserError:
            continue
        assert set(plan.targets) <= set(config.ids)


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "deployment.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "deploy" / "user-service" /
         "deployment.yaml").read_text())
    for cid in ("a", "b"):
        (tmp_path / f"{cid}.yaml").write_text("apiVersion: v1\nkind: Config\n")
    return tmp_path


@SETTINGS
@given(doc=fleet_docs())
def test_random_fleet_files_give_a_plan_or_a_clear_error(fleet_dir, doc):
    check_load(fleet_dir, yaml.safe_dump(doc, allow_unicode=True))


@pytest.mark.parametrize("text", TRICKS, ids=range(len(TRICKS)))
def test_yaml_tricks_are_clear_errors(fleet_dir, text):
    before = set(os.listdir(fleet_dir)) | {"clusters.yaml"}
    check_load(fleet_dir, text)
    assert not (fleet_dir / "pwned").exists()
    assert set(os.listdir(fleet_dir)) == before


@SETTINGS
@given(raw=st.binary(max_size=400))
def test_random_bytes_as_fleet_file(fleet_dir, raw):
    check_load(fleet_dir, raw)


# --- random command lines ------------------------------------------------------------

FLAGS = ["--tag", "--clusters", "--strategy", "--order", "--max-parallel", "--max-failures",
         "--yes", "--json", "--junit", "--fail-fast-grace", "--config", "--since", "--app",
         "--theme", "--to", "--help-not"]
WORDS = st.one_of(st.sampled_from(["v1", "", "-1", "0", "1e9", "nan", "10%", "200%", "a,b",
                                   "!a", "*", "../x", "$(touch pwned)", "a\nb", "x" * 300,
                                   "serial", "parallel", "canary", "--", "-", "prod-*"]),
                  st.text(max_size=12))


@pytest.fixture
def cli_fleet(world):
    """A two-cluster fleet (a canary strategy too) and its ledger directory."""
    return world(["a", "b"], strategies={"canary": {"waves": [["a"], ["rest"]], "gates": True}})


@SETTINGS
@given(command=st.sampled_from(["deploy", "plan", "check"]),
       args=st.lists(st.one_of(st.sampled_from(FLAGS), WORDS), max_size=6))
def test_random_cli_arguments_exit_cleanly_and_write_nothing_on_error(cli_fleet, tmp_path,
                                                                      capsys, command, args):
    w = cli_fleet
    history = w.config.app.history.path
    before_files = tree(history)
    before_state = {c: stored(w.fleet, c) for c in ("a", "b")}
    cwd = os.getcwd()
    os.chdir(tmp_path)          # a --junit path lands here, not in the repo
    try:
        try:
            code = main([command, "--config", str(w.config_path), *args])
        except SystemExit as exc:        # argparse: usage errors are exit 2
            code = exc.code
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert code in (0, 1, 2, 3), (code, captured.err)
    assert not (tmp_path / "pwned").exists()
    if code == 2:
        # Why: on stderr, or in `check`'s table on stdout.
        assert captured.err.strip() or "FAIL" in captured.out, "exit 2 without saying why"
        # Refused: no cluster changed, no ledger line written.
        assert {c: stored(w.fleet, c) for c in ("a", "b")} == before_state
        assert records(tree(history)) == records(before_files)


def records(files: dict[str, bytes]) -> dict[str, bytes]:
    """The ledger's record files (history/*.jsonl and *.md), without Git's own."""
    return {k: v for k, v in files.items() if k.startswith("history/")}


# --- names ----------------------------------------------------------------------------

HOSTILE = ["v1;rm -rf /", "$(touch pwned)", "`id`", "v1|cat", "v1&&x", "../../etc/passwd",
           "..", "a/../b", "v1\nv2", "v1\r", "v1\x00", "x" * 129, "é", "v 1", "-v1", ".v1",
           "v1'", 'v1"', "v1>out", "*", "~root", "${HOME}"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_tags_and_names_are_refused(value):
    with pytest.raises(UserError) as tag_error:
        validate_tag(value)
    assert "\n" not in str(tag_error.value).rstrip()
    with pytest.raises(UserError):
        validate_dns_label(value)


def test_hostile_tag_on_the_command_line_reaches_no_shell_and_no_path(world, tmp_path, capsys):
    w = world(["a"])
    history = w.config.app.history.path
    before = tree(history)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for tag in ("$(touch pwned)", "../../pwned", "v1\nv2", "x" * 300, "`touch pwned`"):
            assert main(["deploy", "--config", str(w.config_path), "--tag", tag, "--json",
                         "--junit", "report.xml"]) == 2
            err = capsys.readouterr().err
            assert "tag" in err and "Traceback" not in err
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "pwned").exists() and not (tmp_path.parent / "pwned").exists()
    assert not (tmp_path / "report.xml").exists()
    assert stored(w.fleet, "a") is None
    # No record written (opening the ledger may create its empty repository).
    assert records(tree(history)) == records(before)


# --- kubeconfigs that point elsewhere or run a program --------------------------------

def _rewrite_credentials(w, cid: str, kubeconfig: dict, **creds) -> None:
    path = w.config_path.parent / f"{cid}.yaml"
    path.write_text(yaml.safe_dump(kubeconfig))
    doc = yaml.safe_load(w.config_path.read_text())
    for entry in doc["clusters"]:
        if entry["id"] == cid:
            entry["credentials"] = {"kubeconfig": str(path), **creds}
    w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_kubeconfig_with_a_different_server_than_pinned_is_refused(world, capsys):
    w = world(["a", "b"])
    kube = w.fleet.kubeconfig("b")      # b's real credentials, presented as a's
    _rewrite_credentials(w, "a", kube, server=w.fleet.url("a"))
    code = main(["deploy", "--config", str(w.config_path), "--tag", "v1", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    text = captured.out + captured.err
    assert "cluster 'a'" in text and w.fleet.url("b") in text
    assert f"pins the API server {w.fleet.url('a')}" in text
    assert w.fleet.admin_token("b") not in text
    assert stored(w.fleet, "a") is None and stored(w.fleet, "b") is None
    assert events_of(captured.out)[-1]["outcome"] == "preflight_failed"


def test_exec_plugin_not_allowed_is_refused_and_never_run(world, tmp_path, capsys):
    w = world(["a"])
    marker = tmp_path / "exec-ran"
    plugin = tmp_path / "get-token.sh"
    plugin.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\n"
                      "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
                      "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"x\"}}'\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    kube = w.fleet.kubeconfig("a")
    kube["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                         "command": str(plugin), "args": [],
                                         "interactiveMode": "Never"}}
    _rewrite_credentials(w, "a", kube)
    for command in (["deploy", "--tag", "v1", "--json"], ["status"], ["plan", "--tag", "v1"],
                    ["check", "--tag", "v1"]):
        code = main([command[0], "--config", str(w.config_path), *command[1:]])
        captured = capsys.readouterr()
        text = captured.out + captured.err
        if command[0] == "plan":
            # `plan` marks the cluster "? [1]" and prints the whole refusal under the table.
            assert "? [1]" in text and "[1] a: cluster 'a': credentials from kube" in text, text
            text = " ".join(text.split())   # the footnote is wrapped to the terminal
        assert "exec credential plugin" in text and "allow_exec" in text, (command, text)
        # `status` reads what it can and reports the refusal per cluster (exit 4: a
        # cluster could not be read); `plan` shows it under its table (exit 0); the others
        # refuse.
        expected = {"status": (4,), "plan": (0,)}.get(command[0], (1, 2))
        assert code in expected, (command, code)
    assert not marker.exists()
    assert stored(w.fleet, "a") is None
    # Embedded CA data is not echoed either.
    assert base64.b64encode(w.fleet.ca_pem).decode()[20:80] not in text


def test_vault_fetched_kubeconfig_pointing_elsewhere_or_running_exec_is_refused(
        world, bao, tmp_path, monkeypatch, capsys):
    from tests.faults.conftest import vault_fleet
    w = world(["a", "b"])
    path, _texts = vault_fleet(w, bao, tmp_path)
    marker = tmp_path / "exec-ran"
    plugin = tmp_path / "get-token.sh"
    plugin.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    # In Vault: a's entry holds b's kubeconfig (a's server is pinned); b's runs a plugin.
    kv = bao.client().secrets.kv.v2
    kv.create_or_update_secret(path="kubeconfigs/a", mount_point="secret",
                               secret={"kubeconfig": yaml.safe_dump(w.fleet.kubeconfig("b"))})
    exec_kube = w.fleet.kubeconfig("b")
    exec_kube["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                              "command": str(plugin), "args": []}}
    kv.create_or_update_secret(path="kubeconfigs/b", mount_point="secret",
                               secret={"kubeconfig": yaml.safe_dump(exec_kube)})
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["credentials"]["server"] = w.fleet.url("a")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    code = main(["deploy", "--config", str(path), "--tag", "v1", "--strategy", "parallel"])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2
    assert "vault secret/kubeconfigs/a" in text and f"pins the API server {w.fleet.url('a')}" in text
    assert "vault secret/kubeconfigs/b" in text and "exec credential plugin" in text
    assert not marker.exists()
    assert stored(w.fleet, "a") is None and stored(w.fleet, "b") is None
    assert w.fleet.admin_token("b") not in text and bao.root_token not in text
