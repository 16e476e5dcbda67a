"""Pre-flight of a chart release sends the rendered objects to the API server: a chart
whose Deployment the server refuses fails the `dry-run` check before anything is touched,
on an upgrade (after a good first release) as on a first release. Helm's own
`--dry-run=server` does not send them (it only lets templates look things up)."""

from __future__ import annotations

import json

import yaml

from console.cli import main


def with_container_port(world, port: int) -> None:
    """The fleet file's default values set the chart's containerPort to `port`."""
    doc = yaml.safe_load(world.config_path.read_text())
    doc["defaults"]["values"]["containerPort"] = port
    world.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))


def dry_run_row(capsys, world, tag: str) -> tuple[int, dict]:
    code = main(["check", "--config", str(world.config_path), "--tag", tag, "--json"])
    out = capsys.readouterr().out
    doc = json.loads(out)
    rows = doc["results"] if isinstance(doc, dict) else doc
    return code, next(r for r in rows if r["check"] == "dry-run")


def test_an_upgrade_the_server_refuses_fails_preflight(helm_world, capsys):
    w = helm_world(["h1"])
    assert w.release("v1").exit_code == 0
    code, row = dry_run_row(capsys, w, "v2")
    assert code == 0 and row["ok"], row
    assert "dryRun=All" in row["detail"] and "helm upgrade --dry-run=server" in row["detail"]

    with_container_port(w, 70000)
    code, row = dry_run_row(capsys, w, "v2")
    assert code != 0 and not row["ok"], row
    assert "containerPort" in row["detail"] and row["cluster"] == "h1"
    # A release stops at pre-flight: Helm's history stays at the good v1.
    assert main(["deploy", "--config", str(w.config_path), "--tag", "v2", "--yes"]) != 0
    capsys.readouterr()
    assert [r["revision"] for r in w.history("h1")] == [1]
    assert w.version("h1") == "v1"


def test_a_first_release_the_server_refuses_fails_preflight(helm_world, capsys):
    w = helm_world(["h1"])
    with_container_port(w, 70000)
    code, row = dry_run_row(capsys, w, "v1")
    assert code != 0 and not row["ok"], row
    assert "containerPort" in row["detail"] and "first release" in row["detail"]


def test_a_lint_failure_shows_lints_findings(helm_world, capsys, tmp_path):
    """helm lint prints its findings on stdout and only a count on stderr: the `chart`
    row carries the [ERROR] findings (which template, which line, what)."""
    import shutil

    from .conftest import CHART
    w = helm_world(["h1"])
    chart = tmp_path / "broken-chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "settings.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.deeper }}\n")
    doc = yaml.safe_load(w.config_path.read_text())
    doc["app"]["chart"] = str(chart)
    w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code = main(["check", "--config", str(w.config_path), "--tag", "v1", "--json"])
    doc = json.loads(capsys.readouterr().out)
    rows = doc["results"] if isinstance(doc, dict) else doc
    row = next(r for r in rows if r["check"] == "chart")
    assert code != 0 and not row["ok"], row
    assert "[ERROR]" in row["detail"], row
    assert "settings.yaml:4" in row["detail"] and "nil pointer" in row["detail"], row
    assert "[INFO]" not in row["detail"]           # the findings that fail it, only


def test_a_chart_directory_that_does_not_exist_is_exit_2_naming_the_field(helm_world,
                                                                            capsys):
    w = helm_world(["h1"])
    text = w.config_path.read_text()
    doc = yaml.safe_load(text)
    missing = str(w.config_path.parent / "charts" / "nowhere")
    doc["app"]["chart"] = missing
    w.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = next(i for i, t in enumerate(w.config_path.read_text().splitlines(), 1)
                if t.strip().startswith("chart:"))
    assert main(["check", "--config", str(w.config_path), "--tag", "v1"]) == 2
    err = capsys.readouterr().err
    assert f"{w.config_path}:{line}: app.chart: " in err, err
    assert f"{missing} does not exist" in err
