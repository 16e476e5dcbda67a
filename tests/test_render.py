"""Rendering the app's manifests per cluster: placeholders filled after parsing, so no
value can change a document's structure."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from console.config import load
from console.errors import ConfigError, ValidationError
from console.render import manifest_files, placeholders, render

ROOT = Path(__file__).resolve().parent.parent

FLEET = """\
app:
  name: web
  image: registry.example.com/apps/web
  manifests: k8s
  namespace: "web-{cluster}"
defaults:
  values:
    replicas: 2
    motd: "hello"
    debug: false
clusters:
  - id: eu
    values: {replicas: 5, motd: "line one\\nline two: {x: 1}\\n---\\nkind: Secret"}
  - id: us
    values: {extra: {a: [1, 2]}, motd: "${app}"}
"""


def fleet(tmp_path: Path, *manifests: tuple[str, str], fleet_text: str = FLEET):
    (tmp_path / "k8s").mkdir(exist_ok=True)
    for name, text in manifests:
        path = tmp_path / "k8s" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (tmp_path / "clusters.yaml").write_text(fleet_text)
    return load(tmp_path / "clusters.yaml")


def render_error(config, cluster="eu", tag="1.0") -> str:
    with pytest.raises(ConfigError) as info:
        render(config, cluster, tag)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_user_service_renders_per_cluster():
    config = load(ROOT / "clusters.yaml")
    for cluster in config.clusters:
        [deployment] = render(config, cluster, "3f2a9c1-42")
        assert deployment["kind"] == "Deployment"
        assert deployment["metadata"] == {"name": "user-service", "namespace": cluster.id,
                                          "labels": {"app": "user-service"}}
        assert deployment["spec"]["replicas"] == cluster.values["replicas"]
        assert isinstance(deployment["spec"]["replicas"], int)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "registry.example.com/apps/user-service:3f2a9c1-42"
        assert container["name"] == "user-service"
        assert container["env"] == [{"name": "CLUSTER_ID", "value": cluster.id}]
        assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                          "limits": {"cpu": "500m", "memory": "256Mi"}}
        assert deployment["spec"]["selector"]["matchLabels"] == {"app": "user-service"}
    assert render(config, "prod-eu", "1.0")[0]["spec"]["replicas"] == 6
    assert render(config, "staging", "1.0")[0]["spec"]["replicas"] == 2


def test_rendered_objects_are_independent_of_the_config():
    config = load(ROOT / "clusters.yaml")
    [first] = render(config, "staging", "1.0")
    first["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "9"
    assert config.cluster("staging").values["resources"]["limits"]["cpu"] == "500m"
    [again] = render(config, "staging", "1.0")
    assert again["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "500m"


def test_a_manifest_is_parsed_once_and_its_renderings_share_nothing(tmp_path):
    """A release renders every cluster twice from the same files: they are parsed once
    per text, and what one rendering's caller changes never reaches another rendering;
    a changed file is parsed again."""
    from console.render import _parsed
    config = fleet(tmp_path, ("app.yaml", """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings}
        data: {motd: "${motd}", fixed: "same", nested: {list: [1, 2]}}
        """))
    parsed = _parsed.cache_info().misses
    [eu] = render(config, "eu", "1.0")
    eu["data"]["nested"]["list"].append(3)
    eu["data"]["fixed"] = "changed"
    [us] = render(config, "us", "1.0")
    [eu_again] = render(config, "eu", "1.0")
    assert _parsed.cache_info().misses == parsed + 1
    assert us["data"]["nested"] == {"list": [1, 2]} and us["data"]["fixed"] == "same"
    assert eu_again["data"]["nested"] == {"list": [1, 2]}
    assert us["data"]["motd"] == "${app}" and eu_again["data"]["motd"].startswith("line one")
    (tmp_path / "k8s" / "app.yaml").write_text((tmp_path / "k8s" / "app.yaml").read_text()
                                               .replace("same", "new"))
    assert render(config, "us", "1.0")[0]["data"]["fixed"] == "new"


def test_multi_document_files_in_path_order_and_yml(tmp_path):
    config = fleet(tmp_path,
                   ("b.yml", """\
                       apiVersion: v1
                       kind: Service
                       metadata: {name: "${app}"}
                       spec: {ports: [{port: 80}]}
                       """),
                   ("a.yaml", """\
                       ---
                       apiVersion: v1
                       kind: ConfigMap
                       metadata: {name: "${app}-config"}
                       data:
                         motd: ${motd}
                         summary: "${app} ${tag} on ${cluster} in ${namespace}, debug=${debug}"
                         cost: "$${HOME} costs $$5"
                       ---
                       ---
                       apiVersion: rbac.authorization.k8s.io/v1
                       kind: ClusterRole
                       metadata: {name: "${app}-reader"}
                       """),
                   ("sub/c.yaml", """\
                       apiVersion: v1
                       kind: ServiceAccount
                       metadata: {name: "${app}", namespace: "${namespace}"}
                       """),
                   ("notes.txt", "not yaml: ["))
    objs = render(config, "eu", "2.0")
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ConfigMap", "web-config"), ("ClusterRole", "web-reader"), ("Service", "web"),
        ("ServiceAccount", "web")]
    cm = objs[0]
    assert cm["metadata"]["namespace"] == "web-eu"
    assert cm["data"]["summary"] == "web 2.0 on eu in web-eu, debug=false"
    assert cm["data"]["cost"] == "${HOME} costs $5"
    assert "namespace" not in objs[1]["metadata"]  # cluster-scoped
    assert objs[2]["metadata"]["namespace"] == "web-eu"
    assert [p.name for p in manifest_files(config)] == ["a.yaml", "b.yml", "c.yaml"]


def test_values_cannot_change_document_structure(tmp_path):
    config = fleet(tmp_path, ("cm.yaml", """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: x}
        data: {motd: "${motd}", inline: "say ${motd}"}
        """))
    [cm] = render(config, "eu", "1.0")
    evil = "line one\nline two: {x: 1}\n---\nkind: Secret"
    assert cm["data"] == {"motd": evil, "inline": f"say {evil}"}
    assert cm["kind"] == "ConfigMap" and set(cm) == {"apiVersion", "kind", "metadata", "data"}
    # What gets applied round-trips through YAML to the same single object.
    assert list(yaml.safe_load_all(yaml.safe_dump(cm))) == [cm]
    # A value that itself looks like a placeholder is not expanded again.
    [cm] = render(config, "us", "1.0")
    assert cm["data"]["motd"] == "${app}"


def test_whole_placeholder_keeps_type_unless_quoted(tmp_path):
    config = fleet(tmp_path, ("d.yaml", """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: x}
        spec:
          replicas: ${replicas}
          quoted: "${replicas}"
          single: '${replicas}'
          flag: ${debug}
          extra: ${extra}
        """))
    spec = render(config, "us", "1.0")[0]["spec"]
    assert spec["replicas"] == 2 and spec["quoted"] == "2" and spec["single"] == "2"
    assert spec["flag"] is False
    assert spec["extra"] == {"a": [1, 2]}


@pytest.mark.parametrize("body, expected", [
    ("data:\n  a: ${replica}", "k8s/x.yaml:5: data.a: unknown placeholder ${replica} (did you mean 'replicas'?); known: app, cluster, debug, image, motd, namespace, replicas, tag"),
    ("data:\n  a: ok\n  b: \"x-${nope}\"", "k8s/x.yaml:6: data.b: unknown placeholder ${nope}"),
    ("data: {a: \"${ bad }\"}", "k8s/x.yaml:4: data.a: '${ bad }' is not a placeholder"),
    ("data: {a: \"cost ${app\"}", "k8s/x.yaml:4: data.a: unterminated placeholder"),
    ("data: {a: \"x ${extra}\"}", "k8s/x.yaml:4: data.a: unknown placeholder ${extra}"),
    ("metadata: {name: y, namespace: other}", "k8s/x.yaml:4: metadata.namespace: 'other' conflicts with cluster 'eu'"),
])
def test_template_errors_name_file_line_and_placeholder(tmp_path, body, expected):
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n" + body + "\n"
    if body.startswith("metadata"):
        text = "apiVersion: v1\nkind: ConfigMap\n" + body + "\n"
        expected = expected.replace(":4:", ":3:")
    config = fleet(tmp_path, ("x.yaml", text))
    assert render_error(config).startswith(expected)


def test_mapping_inside_a_string_is_refused(tmp_path):
    config = fleet(tmp_path, ("x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
                                        "data: {a: \"x ${extra}\", b: \"${extra}\"}\n"))
    assert "data.a: ${extra} is a mapping; it can only stand alone" in render_error(config, "us")


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", "k8s/x.yaml:1: expected a Kubernetes object"),
    ("kind: ConfigMap\nmetadata: {name: x}\n", "k8s/x.yaml:1: expected a Kubernetes object"),
    ("apiVersion: v1\nkind: ConfigMap\n", "k8s/x.yaml:1: metadata.name: a ConfigMap needs a name"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n", "k8s/x.yaml:4: invalid YAML"),
    ("apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: x}\n", "k8s/x.yaml:3: kind: duplicate key"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
     "k8s/x.yaml:5: ConfigMap 'x' is also defined at k8s/x.yaml:1"),
])
def test_bad_documents(tmp_path, text, expected):
    config = fleet(tmp_path, ("x.yaml", text))
    assert render_error(config).startswith(expected)


def test_alias_bomb_in_a_manifest_is_refused(tmp_path):
    bomb = "a: &a [" + ",".join(["x"] * 9) + "]\n" + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    config = fleet(tmp_path, ("x.yaml", bomb))
    assert "too complex" in render_error(config)


def test_missing_or_empty_manifests_directory(tmp_path):
    config = fleet(tmp_path, fleet_text=FLEET.replace("manifests: k8s", "manifests: nowhere"))
    assert render_error(config) == (f"{tmp_path / 'clusters.yaml'}:4: app.manifests: "
                                    f"{tmp_path / 'nowhere'}: no such directory")
    config = fleet(tmp_path)
    assert render_error(config).endswith(f"{tmp_path / 'k8s'}: no *.yaml or *.yml files")


def test_bad_tag_and_unknown_cluster(tmp_path):
    config = load(ROOT / "clusters.yaml")
    with pytest.raises(ValidationError, match="tag: '1.0 ; rm' is not a valid image tag"):
        render(config, "staging", "1.0 ; rm")
    with pytest.raises(ValidationError, match="unknown cluster 'nope'"):
        render(config, "nope", "1.0")


def test_placeholders_names():
    config = load(ROOT / "clusters.yaml")
    names = placeholders(config, config.cluster("prod-us"), "9")
    assert names["image"] == "registry.example.com/apps/user-service:9"
    assert {"app", "cluster", "namespace", "image", "tag", "replicas", "resources"} == set(names)
