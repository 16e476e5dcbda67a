"""The Helm keys of the fleet file: `app.chart` as the alternative to `app.manifests`,
and every mistake a one-line error naming the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from console.config import load
from console.errors import ConfigError

BASE = """\
app:
  name: web
  image: registry.example.com/apps/web
{extra}
clusters:
  - id: a
"""


def load_with(tmp_path: Path, extra: str):
    # The chart directory the examples name (a local chart must exist when loaded).
    (tmp_path / "charts" / "web").mkdir(parents=True, exist_ok=True)
    (tmp_path / "charts" / "web" / "Chart.yaml").write_text("name: web\nversion: 0.1.0\n")
    path = tmp_path / "clusters.yaml"
    path.write_text(BASE.format(extra=textwrap.indent(textwrap.dedent(extra), "  ")))
    return load(path)


def error_of(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_with(tmp_path, extra)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "clusters.yaml")) and "\n" not in message
    return message.removeprefix(str(tmp_path / "clusters.yaml"))


def test_a_chart_directory_with_defaults(tmp_path):
    chart = load_with(tmp_path, "chart: charts/web").app.chart
    assert chart is not None and not chart.is_oci
    assert chart.chart == str(tmp_path / "charts" / "web")   # relative to the fleet file
    assert (chart.release, chart.tag_key, chart.cluster_key) == ("web", "image.tag", "cluster")
    assert chart.repository_key == "image.repository"
    assert chart.storage == "secret" and chart.version is None


def test_every_chart_key(tmp_path):
    chart = load_with(tmp_path, """\
        chart: oci://registry.example.com/charts/web
        chart_version: 1.4.2
        release: web-eu
        chart_keys: {tag: app.version, cluster: global.clusterId, repository: null}
        helm_storage: configmap
        helm_timeout: 3m
        """).app.chart
    assert chart.is_oci and chart.version == "1.4.2" and chart.release == "web-eu"
    assert (chart.tag_key, chart.cluster_key, chart.repository_key) == \
        ("app.version", "global.clusterId", None)
    assert chart.storage == "configmap" and chart.timeout == 180


def test_manifests_apps_have_no_chart(tmp_path):
    assert load_with(tmp_path, "manifests: deploy/web").app.chart is None


@pytest.mark.parametrize("extra, expected", [
    ("manifests: deploy/web\nchart: charts/web",
     ":5: app.chart: give app.manifests or app.chart, not both"),
    ("chart: oci://registry.example.com/charts/web",
     ":4: app.chart: an oci:// chart needs app.chart_version"),
    ("chart: charts/web\nchart_version: 1.0.0",
     ":5: app.chart_version: only for an oci:// chart"),
    ("chart: https://example.com/web.tgz", ":4: app.chart: 'https://example.com/web.tgz': a chart is"),
    ("release: web-eu", ":4: app.release: only used with app.chart"),
    ("helm_storage: configmap", ":4: app.helm_storage: only used with app.chart"),
    ("chart: charts/web\nhelm_storage: sql", ":5: app.helm_storage: unknown storage 'sql'"),
    ("chart: charts/web\nrelease: Web_EU", ":5: app.release: 'Web_EU' is not a Helm release name"),
    ("chart: charts/web\nchart_keys: {tag: 'image.tag,x=1'}",
     ":5: app.chart_keys.tag: 'image.tag,x=1' is not a value key"),
    ("chart: charts/web\nchart_keys: {tags: image.tag}", ":5: app.chart_keys.tags: unknown key"),
])
def test_chart_mistakes_name_line_and_field(tmp_path, extra, expected):
    assert error_of(tmp_path, extra).startswith(expected)


def test_an_oci_chart_registry_login_and_tls(tmp_path):
    chart = load_with(tmp_path, """\
        chart: oci://127.0.0.1:5000/charts/web
        chart_version: 1.4.2
        chart_registry: {username_env: CHART_USER, password_env: CHART_PASSWORD,
                         plain_http: true}
        """).app.chart
    reg = chart.registry
    assert (reg.username_env, reg.password_env, reg.vault) == ("CHART_USER", "CHART_PASSWORD",
                                                               None)
    assert reg.login and reg.plain_http and reg.ca_file is None
    vault = load_with(tmp_path, """\
        chart: oci://charts.example.com/web
        chart_version: 1.4.2
        chart_registry: {vault: secret/charts/registry, ca_file: certs/ca.pem}
        """).app.chart.registry
    assert vault.vault == "secret/charts/registry" and not vault.plain_http
    assert vault.ca_file == tmp_path / "certs" / "ca.pem"


OCI = "chart: oci://charts.example.com/web\nchart_version: 1.0.0\n"


@pytest.mark.parametrize("extra, expected", [
    ("chart: charts/web\nchart_registry: {vault: secret/x}",
     ":5: app.chart_registry: only for an oci:// chart"),
    (OCI + "chart_registry: {username_env: U}",
     ":6: app.chart_registry: give username_env and password_env together (password_env"),
    (OCI + "chart_registry: {username_env: U, password_env: P, vault: secret/x}",
     ":6: app.chart_registry: give username_env/password_env or vault, not both"),
    (OCI + "chart_registry: {password: hunter2}", ":6: app.chart_registry.password: unknown key"),
    (OCI + "chart_registry: {plain_http: true}",
     ":6: app.chart_registry.plain_http: true applies to a loopback registry only"),
    (OCI + "chart_registry: {plain_http: other.example.com}",
     ":6: app.chart_registry.plain_http: 'other.example.com' is not the chart's registry host"),
    (OCI + "chart_registry: {plain_http: charts.example.com, vault: secret/x}",
     ":6: app.chart_registry.plain_http: a login to charts.example.com over plain HTTP would "
     "send the password in clear"),
    (OCI + "chart_registry: {password_env: 'A B', username_env: U}",
     ":6: app.chart_registry.password_env: 'A B' is not an environment variable name"),
])
def test_chart_registry_mistakes_name_line_and_field(tmp_path, extra, expected):
    assert error_of(tmp_path, extra).startswith(expected)


def test_a_local_chart_must_exist_when_the_fleet_file_is_loaded(tmp_path):
    message = error_of(tmp_path, "chart: charts/nowhere")
    assert message.startswith(":4: app.chart: chart directory ")
    assert f"{tmp_path / 'charts' / 'nowhere'} does not exist" in message
    (tmp_path / "charts" / "empty").mkdir(parents=True)
    assert error_of(tmp_path, "chart: charts/empty").startswith(
        f":4: app.chart: {tmp_path / 'charts' / 'empty'} has no Chart.yaml")
