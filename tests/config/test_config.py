"""The fleet file loader: the demo file loads, and every kind of mistake is a one-line
ConfigError naming the file, the line and the field."""

from __future__ import annotations

import copy
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.config import (FleetConfig, deep_merge, failure_budget_count, load,
                            parse_duration, parse_failure_budget)
from console.errors import ConfigError, ValidationError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
app:
  name: web
  image: registry.example.com/apps/web
clusters:
  - id: a
    groups: [prod]
  - id: b
    groups: [staging]
"""


def write(tmp_path: Path, text: str, name: str = "clusters.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message and "Traceback" not in message
    return message.removeprefix(str(path))


# --------------------------------------------------------------------------- the demo file


def test_demo_fleet_loads_with_defaults_merged():
    config = load(ROOT / "clusters.yaml")
    assert isinstance(config, FleetConfig)
    assert config.ids == ("staging", "prod-eu-10pct", "prod-eu", "prod-us", "prod-ap")
    assert config.app.name == "user-service"
    assert config.app.image == "registry.example.com/apps/user-service"
    assert config.app.image_ref("1.2") == "registry.example.com/apps/user-service:1.2"
    assert config.app.manifests == ROOT / "deploy" / "user-service"
    assert config.app.rollout_timeout == 600.0
    assert config.app.history.path == ROOT / ".release-history"
    assert config.app.notify.on == ("failure",)
    staging = config.cluster("staging")
    assert staging.namespace == "staging"
    assert staging.groups == ("staging", "eu")
    assert staging.production is False
    assert config.cluster("prod-eu").production is True
    # values deep-merged over defaults.values
    assert staging.values["replicas"] == 2
    assert staging.values["resources"]["limits"]["memory"] == "256Mi"
    assert config.cluster("prod-eu").values["replicas"] == 6
    assert staging.credentials.kubeconfig == Path.home() / ".kube/release-console/staging.yaml"
    assert config.cluster("prod-ap").sim == {"error_rate": 0.1}
    assert config.cluster("staging").line == 32
    canary = config.strategies["canary"]
    assert canary.waves == (("staging",), ("prod-eu-10pct",), ("prod-eu", "prod-us", "prod-ap"))
    assert canary.gates is True and canary.max_failures == "0"
    assert config.sim["never_pull"] == ["*broken*"]
    assert config.vault is None
    assert config.lines["clusters[4].sim"] == 53
    assert "prod" in config.groups


def test_unknown_cluster_lookup_suggests():
    config = load(ROOT / "clusters.yaml")
    with pytest.raises(ValidationError, match="did you mean 'prod-eu'"):
        config.cluster("prod-eux")


def test_full_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(tmp_path, """\
        app:
          name: web
          image: 127.0.0.1:5000/apps/web
          manifests: k8s
          namespace: "web-{cluster}"
          rollout_timeout: 90s
          history: {path: /srv/ledger, remote: "git@example.com:ops/h.git"}
          notify:
            on: [failure, gate]
            slack_webhook: https://hooks.example.com/x
            email: {to: ops@example.com, from: rc@example.com, host: smtp.example.com,
                    port: 2525, starttls: false, username_env: SMTP_USER, password_env: SMTP_PASS}
          registry: {ca_file: ca.pem, insecure: true, username_env: REG_USER,
                     password_env: REG_PASS, auth_file: ~/.docker/config.json}
          build: {command: make image}
        vault:
          addr: https://vault.example.com:8200
          path_pattern: kv/clusters/{cluster}
          auth: approle
          role_id_env: MY_ROLE
        defaults:
          values: {replicas: 3, resources: {limits: {cpu: 1}}, env: {A: "1"}}
        clusters:
          - id: a
            groups: [eu]
            production: true
            namespace: special
            credentials: {vault: true, server: "https://10.0.0.1:6443",
                          ca_sha256: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"}
            values: {resources: {limits: {memory: 1Gi}}, env: {B: "2"}}
          - id: b
            credentials: {vault: other/path/b, allow_exec: true}
          - id: c
            groups: [production]
            credentials: {env: KUBECONFIG_C, context: ctx}
          - id: d
            credentials: {kubeconfig: kube/d.yaml, context: d-admin}
        strategies:
          waves3:
            waves: [[a], "50%", rest]
            gates: true
            max_failures: 10%
            max_parallel: 4
        order: [c, a]
        sim: {readiness_delay: 0.1}
        """)
    config = load(path)
    app = config.app
    assert app.manifests == tmp_path / "k8s"
    assert app.rollout_timeout == 90.0
    assert app.history.path == Path("/srv/ledger")
    assert app.history.remote == "git@example.com:ops/h.git"
    assert app.notify.on == ("failure", "gate")
    assert app.notify.email is not None and app.notify.email.to == ("ops@example.com",)
    assert app.notify.email.port == 2525 and app.notify.email.starttls is False
    assert app.notify.email.sender == "rc@example.com"
    assert app.registry.ca_file == tmp_path / "ca.pem"
    assert app.registry.auth_file == tmp_path / "home/.docker/config.json"
    assert app.registry.insecure is True
    assert app.build_command == "make image"
    assert app.notify.slack_webhook == "https://hooks.example.com/x"
    assert config.vault is not None and config.vault.auth == "approle"
    assert config.vault.role_id_env == "MY_ROLE" and config.vault.secret_id_env == "VAULT_SECRET_ID"
    a, b, c, d = config.clusters
    assert a.namespace == "special" and b.namespace == "web-b"
    assert a.production is True and b.production is False and c.production is True
    assert a.credentials.vault == "kv/clusters/a"
    assert a.credentials.ca_sha256 == "abcdef0123456789" * 4
    assert a.credentials.server == "https://10.0.0.1:6443"
    assert b.credentials.vault == "other/path/b" and b.credentials.allow_exec is True
    assert c.credentials.env == "KUBECONFIG_C" and c.credentials.context == "ctx"
    assert d.credentials.kubeconfig == tmp_path / "kube/d.yaml"
    assert a.values == {"replicas": 3, "resources": {"limits": {"cpu": 1, "memory": "1Gi"}},
                        "env": {"A": "1", "B": "2"}}
    assert b.values == {"replicas": 3, "resources": {"limits": {"cpu": 1}}, "env": {"A": "1"}}
    s = config.strategies["waves3"]
    assert s.waves == (("a",), ("50%",), ("rest",))
    assert s.max_failures == "10%" and s.max_parallel == 4 and s.gates
    assert config.order == ("c", "a")
    assert config.sim == {"readiness_delay": 0.1}


def test_vault_section_defaults_when_a_cluster_uses_vault(tmp_path):
    config = load(write(tmp_path, MINIMAL.replace("groups: [prod]",
                                                  "credentials: {vault: true}")))
    assert config.vault is not None
    assert config.cluster("a").credentials.vault == "secret/kubeconfigs/a"
    assert config.cluster("b").credentials.vault is None


def test_yaml_anchors_and_merge_keys_work(tmp_path):
    config = load(write(tmp_path, """\
        app: {name: web, image: r.example.com/web}
        clusters:
          - &base {id: a, groups: [prod], values: {replicas: 2}}
          - <<: *base
            id: b
        """))
    assert config.cluster("b").groups == ("prod",)
    assert config.cluster("b").values == {"replicas": 2}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text, expected", [
    # wrong type, with the line of the value and the dotted path
    (MINIMAL.replace("groups: [staging]", "groups: prd"),
     ":8: clusters[1].groups: expected a list of names, got 'prd'"),
    # unknown key with a suggestion
    (MINIMAL.replace("groups: [staging]", "grups: [staging]"),
     ":8: clusters[1].grups: unknown key (did you mean 'groups'?)"),
    (MINIMAL + "stratgies: {}\n", ":9: stratgies: unknown key (did you mean 'strategies'?)"),
    # a pacing window of no time would pace nothing (it was accepted silently)
    (MINIMAL + "strategies:\n  fast: {waves: [a], max_starts: 10/0s}\n",
     ":10: strategies.fast.max_starts: expected N/DURATION such as 10/30s (at most N "
     "clusters start in any DURATION; N and DURATION above 0), got '10/0s'"),
    (MINIMAL.replace("  name: web", "  name: web\n  imagee: x"),
     ":3: app.imagee: unknown key (did you mean 'image'?)"),
    # duplicate ids name both lines
    (MINIMAL.replace("id: b", "id: a"),
     ":7: clusters[1].id: duplicate cluster id 'a' (also at line 5)"),
    # duplicate YAML keys
    (MINIMAL.replace("  name: web", "  name: web\n  name: web2"),
     ":3: app.name: duplicate key (first at line 2)"),
    # ids must be DNS-1123 labels
    (MINIMAL.replace("id: b", "id: Prod_EU"), ":7: clusters[1].id: 'Prod_EU' is not a valid DNS-1123 label"),
    (MINIMAL.replace("id: b", "id: " + "x" * 64), ":7: clusters[1].id: 'xxxx"),
    (MINIMAL.replace("id: b", "id: 12"), ":7: clusters[1].id: expected a name, got 12"),
    (MINIMAL.replace("id: b", "id: rest"), "clusters[1].id: 'rest' is reserved"),
    (MINIMAL.replace("groups: [staging]", "groups: [Staging]"), ":8: clusters[1].groups[0]: 'Staging'"),
    # missing required keys
    (MINIMAL.replace("  image: registry.example.com/apps/web\n", ""), ":2: app: missing required key 'image'"),
    (MINIMAL.replace("  - id: b\n", "  - name: b\n"), ":7: clusters[1].name: unknown key"),
    ("app: {name: web, image: r.example.com/web}\n", ":1: top level: missing required key 'clusters'"),
    ("app: {name: web, image: r.example.com/web}\nclusters: []\n",
     ":2: clusters: expected a non-empty list of clusters, got an empty list"),
    # bad durations
    (MINIMAL.replace("  name: web", "  name: web\n  rollout_timeout: 10 minutes"),
     ":3: app.rollout_timeout: expected a duration such as 90s, 10m, 1h or plain seconds, got '10 minutes'"),
    (MINIMAL.replace("  name: web", "  name: web\n  rollout_timeout: -5"), ":3: app.rollout_timeout: expected a duration"),
    (MINIMAL.replace("  name: web", "  name: web\n  rollout_timeout: 0s"), ":3: app.rollout_timeout: expected a duration"),
    (MINIMAL.replace("  name: web", "  name: web\n  rollout_timeout: true"), ":3: app.rollout_timeout: expected a duration"),
    # images
    (MINIMAL.replace("apps/web", "apps/web:1.0"), ":3: app.image: 'registry.example.com/apps/web:1.0': give the repository without a tag"),
    (MINIMAL.replace("apps/web", "Apps/Web"), ":3: app.image: 'registry.example.com/Apps/Web' is not an image repository"),
    # namespace rule
    (MINIMAL.replace("  name: web", "  name: web\n  namespace: '{cluser}'"),
     ":3: app.namespace: unknown placeholder {cluser}"),
    (MINIMAL.replace("  name: web", "  name: web\n  namespace: 'Web_{cluster}'"),
     ":3: app.namespace: for cluster 'a': namespace: 'Web_a' is not a valid DNS-1123 label"),
    # notify
    (MINIMAL.replace("  name: web", "  name: web\n  notify: {on: [failur]}"),
     ":3: app.notify.on[0]: unknown event 'failur' (did you mean 'failure'?)"),
    (MINIMAL.replace("  name: web", "  name: web\n  notify: {email: {to: x@y}}"),
     ":3: app.notify.email: missing required key 'from'"),
    (MINIMAL.replace("  name: web", "  name: web\n  notify: {email: {to: x@y, from: a@b, host: h, port: 70000}}"),
     ":3: app.notify.email.port: expected a whole number 1..65535, got 70000"),
    (MINIMAL.replace("  name: web", "  name: web\n  registry: {insecure: yes please}"),
     ":3: app.registry.insecure: 'yes please' is not app.image's registry host "
     "(registry.example.com)"),
    (MINIMAL.replace("  name: web", "  name: web\n  registry: {insecure: 5000}"),
     ":3: app.registry.insecure: expected true, false or the registry host (HOST[:PORT]), "
     "got 5000"),
    # insecure: true is for a loopback registry; another host must be named
    (MINIMAL.replace("  name: web", "  name: web\n  registry: {insecure: true}"),
     ":3: app.registry.insecure: true applies to a loopback registry only, and app.image's "
     "registry is registry.example.com: name the host to allow plain HTTP and unverified "
     "TLS there (insecure: registry.example.com)"),
    (MINIMAL.replace("  name: web", "  name: web\n  registry: {password_env: 'my pass'}"),
     ":3: app.registry.password_env: 'my pass' is not an environment variable name"),
    (MINIMAL.replace("  name: web", "  name: web\n  notify: {slack_webhook: 'ftp://secret-token'}"),
     ":3: app.notify.slack_webhook: expected an http(s) URL"),
    (MINIMAL.replace("  name: web", "  name: web\n  notify: {slack_webhook: 'https://h/x', slack_webhook_env: HOOK}"),
     ":3: app.notify: give slack_webhook or slack_webhook_env, not both"),
    (MINIMAL.replace("  name: web", "  name: web\n  history: []"),
     ":3: app.history: expected a mapping, got an empty list"),
    (MINIMAL.replace("  name: web", "  name: web\n  build: make"),
     ":3: app.build: expected a mapping, got 'make'"),
    (MINIMAL.replace("  name: web", "  name: web\n  namespace: ''"),
     ":3: app.namespace: expected a string, got ''"),
    (MINIMAL + "defaults: {values: [1]}\n", ":9: defaults.values: expected a mapping, got a list"),
    (MINIMAL + "sim: 3\n", ":9: sim: expected a mapping, got 3"),
    (MINIMAL.replace("groups: [staging]", "sim: [x]"), ":8: clusters[1].sim: expected a mapping, got a list"),
    # credentials
    (MINIMAL.replace("groups: [staging]", "credentials: {kubeconfig: a.yaml, env: KC}"),
     ":8: clusters[1].credentials: give one credentials source, not kubeconfig and env"),
    (MINIMAL.replace("groups: [staging]", "credentials: {server: 'http://x'}"),
     ":8: clusters[1].credentials.server: expected an https:// URL"),
    (MINIMAL.replace("groups: [staging]", "credentials: {ca_sha256: abc}"),
     ":8: clusters[1].credentials.ca_sha256: expected a SHA-256 fingerprint"),
    (MINIMAL.replace("groups: [staging]", "credentials: {vault: kubeconfig}"),
     ":8: clusters[1].credentials.vault: 'kubeconfig': expected a KV v2 path"),
    (MINIMAL.replace("groups: [staging]", "values: {image: x}"),
     ":8: clusters[1].values.image: 'image' is filled by the console itself"),
    (MINIMAL.replace("groups: [staging]", "values: {my-key: x}"),
     ":8: clusters[1].values.my-key: 'my-key' cannot be used as ${name}"),
    (MINIMAL.replace("groups: [staging]", "production: 1"),
     ":8: clusters[1].production: expected true or false, got 1"),
    (MINIMAL + "vault: {auth: aprole}\n", ":9: vault.auth: expected token or approle, got 'aprole' (did you mean 'approle'?)"),
    (MINIMAL + "vault: {path_pattern: secret/kubeconfigs}\n", ":9: vault.path_pattern: 'secret/kubeconfigs': expected a KV v2 path"),
    # strategies
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a], [prd]]\n",
     ":11: strategies.canary.waves[1][0]: unknown cluster or group 'prd' (did you mean 'prod'?)"),
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a], [z*]]\n",
     ":11: strategies.canary.waves[1][0]: 'z*' matches no cluster"),
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a], '150%']\n",
     ":11: strategies.canary.waves[1]: '150%': a share of the remaining targets is 1-100%"),
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a], 'x%']\n",
     ":11: strategies.canary.waves[1]: 'x%' is not a percentage"),
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a], []]\n", ":11: strategies.canary.waves[1]: empty wave"),
    (MINIMAL + "strategies:\n  canary:\n    waves: a\n",
     ":11: strategies.canary.waves: expected a list of waves, got 'a'"),
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a]]\n    max_failures: lots\n",
     ":12: strategies.canary.max_failures: expected a number of clusters or a percentage (0-100%), got 'lots'"),
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a]]\n    max_failures: 120%\n",
     ":12: strategies.canary.max_failures: expected a number"),
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a]]\n    max_parallel: 0\n",
     ":12: strategies.canary.max_parallel: expected a whole number >= 1, got 0"),
    (MINIMAL + "strategies:\n  canary:\n    waves: [[a]]\n    gate: true\n",
     ":12: strategies.canary.gate: unknown key (did you mean 'gates'?)"),
    (MINIMAL + "strategies:\n  serial:\n    waves: [[a]]\n", ":10: strategies.serial: 'serial' is a built-in strategy"),
    (MINIMAL + "strategies:\n  canary: [a]\n", ":10: strategies.canary: expected a mapping, got a list"),
    # order
    (MINIMAL + "order: [b, x]\n", ":9: order[1]: unknown cluster 'x'"),
    (MINIMAL + "order: [b, b]\n", ":9: order[1]: 'b' is listed twice"),
    (MINIMAL + "order: b\n", ":9: order: expected a list of cluster ids, got 'b'"),
    # document level
    ("", ":1: the file is empty"),
    ("# only a comment\n", ":1: the file is empty"),
    ("- a\n- b\n", ":1: top level: expected a mapping with `app` and `clusters`, got a list"),
    ("just text\n", ":1: top level: expected a mapping with `app` and `clusters`, got 'just text'"),
    ("app: {name: web\nclusters: []\n", ":2: invalid YAML"),
    ("app:\n  name: [unclosed\n", ":3: invalid YAML"),
    ("a: 1\n---\nb: 2\n", ":3: a second YAML document; the fleet file is one document"),
    ("app: *nope\n", ":1: invalid YAML: found undefined alias"),
    ("null\n", ":1: the file is empty"),
    ("app:\n\tname: x\n", ":2: invalid YAML"),
    ("{[a]: 1}\n", ":1: top level: a key must be a plain name"),
    (MINIMAL + "sim: {since: 2024-13-45}\n", ":9: sim.since: '2024-13-45' is not a valid timestamp (quote it"),
    (MINIMAL + "sim: {n: !!int abc}\n", ":9: sim.n: 'abc' is not a valid int"),
    (MINIMAL + "sim: {n: !!python/name:os.system x}\n", ":9: sim.n: could not determine a constructor for the tag"),
    (MINIMAL + "sim: {n: !custom x}\n", ":9: sim.n: could not determine a constructor for the tag '!custom'"),
    (MINIMAL + "sim: &x {a: 1}\nx: &x 2\n", ":10: invalid YAML: found duplicate anchor"),
])
def test_errors_name_file_line_and_field(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_error_uses_the_file_name_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, MINIMAL.replace("groups: [staging]", "groups: prd"))
    with pytest.raises(ConfigError) as info:
        load("clusters.yaml")
    assert str(info.value) == "clusters.yaml:8: clusters[1].groups: expected a list of names, got 'prd'"


def test_missing_file_directory_and_binary(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="bin.yaml"):
        load(tmp_path / "bin.yaml")


def test_yaml_on_key_is_not_a_boolean(tmp_path):
    # YAML 1.1 reads `on:` as True; our loader keeps keys as written.
    config = load(write(tmp_path, MINIMAL.replace(
        "  name: web", "  name: web\n  notify:\n    on: [success]")))
    assert config.app.notify.on == ("success",)


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_alias_bomb_is_refused_quickly(tmp_path):
    started = time.monotonic()
    message = error_of(tmp_path, BILLION_LAUGHS)
    assert "too complex" in message
    assert time.monotonic() - started < 5


def test_many_aliases_are_refused(tmp_path):
    text = "x: &x 1\nl: [" + ", ".join(["*x"] * 1500) + "]\n"
    assert "more than 1000 aliases" in error_of(tmp_path, text)


def test_recursive_alias_is_refused(tmp_path):
    assert "too complex" in error_of(tmp_path, "a: &a [*a]\n")


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_text("# " + "x" * (6 * 1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="too large"):
        load(path)


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("text, seconds", [
    ("10m", 600), ("90s", 90), ("1h", 3600), (90, 90), ("90", 90), ("1h30m", 5400),
    ("500ms", 0.5), (2.5, 2.5), ("1.5m", 90)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10 m", "10x", "-1s", "0", True, None, "1h-5m",
                                  float("nan"), float("inf"), "s10"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value, normal", [(0, "0"), ("3", "3"), ("10%", "10%"),
                                           ("12.5%", "12.5%"), ("100%", "100%")])
def test_failure_budget(value, normal):
    assert parse_failure_budget(value) == normal


@pytest.mark.parametrize("value", [-1, "-1", "101%", "x", True, 1.5, "%"])
def test_failure_budget_rejects(value):
    with pytest.raises(ValueError):
        parse_failure_budget(value)


def test_failure_budget_count():
    assert failure_budget_count(None, 10) == 0
    assert failure_budget_count("2", 10) == 2
    assert failure_budget_count("10%", 10) == 1
    assert failure_budget_count("10%", 9) == 0
    assert failure_budget_count("50%", 7) == 3


def test_deep_merge_does_not_alias_inputs():
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    over = {"a": {"b": 2}, "e": {"f": 1}}
    merged = deep_merge(base, over)
    assert merged == {"a": {"b": 2, "c": [1]}, "d": 1, "e": {"f": 1}}
    merged["a"]["c"].append(2)
    assert base["a"]["c"] == [1]


def test_deep_merge_copies_values_of_any_kind():
    """The fleet file's dicts and lists are copied by hand; anything else deeply too."""
    base = {"a": ({"b": [1]},), "s": {1}}
    merged = deep_merge(base, {"l": [{"x": [1]}]})
    assert merged == {"a": ({"b": [1]},), "s": {1}, "l": [{"x": [1]}]}
    merged["a"][0]["b"].append(2)
    merged["s"].add(2)
    assert base == {"a": ({"b": [1]},), "s": {1}}


def test_webhook_url_is_never_echoed(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace(
        "  name: web", "  name: web\n  notify: {slack_webhook: 'hooks.slack.com/services/T0/B0/s3cr3t'}"))
    assert "s3cr3t" not in message and "app.notify.slack_webhook" in message


def test_webhook_from_environment_variable(tmp_path):
    config = load(write(tmp_path, MINIMAL.replace(
        "  name: web", "  name: web\n  notify: {slack_webhook_env: SLACK_HOOK, on: [failure, success]}")))
    assert config.app.notify.slack_webhook_env == "SLACK_HOOK"
    assert config.app.notify.slack_webhook is None
    assert config.app.notify.on == ("failure", "success")


# --------------------------------------------------------------------------- fuzzing

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
                     st.sampled_from(["", "prod", "a", "b", "10m", "10%", "rest", "x*", "{cluster}",
                                      "https://h", "~/k", "Prod_EU", "on", "VAR", "secret/k/{cluster}"]),
                     st.text(max_size=8))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["id", "groups", "name", "image", "waves", "values", "vault",
                                     "credentials", "on", "email", "to", "x", "gates", "kubeconfig"]),
                    inner, max_size=3)), max_leaves=12)


def _mutations():
    base = {"app": {"name": "web", "image": "r.example.com/web"},
            "clusters": [{"id": "a", "groups": ["prod"]}, {"id": "b"}],
            "strategies": {"s": {"waves": [["a"], "rest"]}}}
    paths = [("app",), ("app", "name"), ("app", "image"), ("app", "notify"), ("app", "registry"),
             ("app", "history"), ("app", "namespace"), ("app", "rollout_timeout"), ("clusters",),
             ("clusters", 0), ("clusters", 0, "groups"), ("clusters", 1, "credentials"),
             ("clusters", 1, "values"), ("strategies",), ("strategies", "s"),
             ("strategies", "s", "waves"), ("strategies", "s", "max_failures"), ("order",),
             ("vault",), ("defaults",), ("sim",), ("clusters", 0, "id")]
    return st.tuples(st.just(base), st.sampled_from(paths), _values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_mutations())
def test_any_structure_gives_a_config_or_a_config_error(tmp_path, case):
    base, path, value = case
    data = copy.deepcopy(base)
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    file = tmp_path / "fuzz.yaml"
    file.write_text(yaml.safe_dump(data))
    try:
        load(file)
    except ConfigError as exc:
        assert str(exc).startswith(f"{file}:") and "\n" not in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="ab:-[]{}&*!|>'\"#%@`,? \n\t\\0x", max_size=60))
def test_any_text_gives_a_config_or_a_config_error(tmp_path, text):
    file = tmp_path / "fuzz.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError):
        load(file)


_FRAGMENTS = ["app:", "clusters:", "\n", "  ", "- ", "id: a", "!!int ", "!!float ", "!!timestamp ",
              "!!binary ", "!!set ", "!!omap ", "!!python/object:x ", "!t ", "2024-13-45", "x",
              "&a ", "*a", "<<: ", "{", "}", "[", "]", ", ", "'", '"', "? ", ": ", "---\n", "%YAML 1.1\n",
              "1e999", "0x", "~", "|\n", ">-\n", "\t", "#"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=25).map("".join))
def test_any_yaml_fragments_give_a_config_error(tmp_path, text):
    file = tmp_path / "fuzz.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(file)
    assert "\n" not in str(info.value)


def test_later_checks_report_in_the_same_format(tmp_path, monkeypatch):
    # The simulator validates `sim` blocks after loading, with the file's lines.
    monkeypatch.chdir(tmp_path)
    write(tmp_path, MINIMAL + "sim:\n  readiness_delay: soon\n")
    config = load("clusters.yaml")
    assert config.lines["sim.readiness_delay"] == 10
    error = config.error("sim.readiness_delay", "expected seconds, got 'soon'")
    assert isinstance(error, ConfigError)
    assert str(error) == "clusters.yaml:10: sim.readiness_delay: expected seconds, got 'soon'"
    assert str(config.error("sim.missing", "required")) == "clusters.yaml: sim.missing: required"


def test_insecure_registry_named_host_and_credential_opt_ins(tmp_path):
    """`insecure` names the one non-loopback host it applies to; the per-cluster opt-ins
    for programs, token fetching and TLS verification off are read as given."""
    text = MINIMAL.replace("  name: web", "  name: web\n  registry: {insecure: registry.example.com}")
    text = text.replace("    groups: [prod]", "    groups: [prod]\n    credentials: {kubeconfig: a.yaml, "
                        "allow_auth_provider: true, allow_insecure_tls: true}")
    config = load(write(tmp_path, text))
    assert config.app.registry.insecure is True
    assert config.app.registry.insecure_host == "registry.example.com"
    a, b = config.clusters
    assert a.credentials.allow_auth_provider and a.credentials.allow_insecure_tls
    assert not (b.credentials.allow_auth_provider or b.credentials.allow_insecure_tls
                or b.credentials.allow_exec)
    loopback = MINIMAL.replace("registry.example.com/apps/web", "localhost:5000/apps/web").replace(
        "  name: web", "  name: web\n  registry: {insecure: true}")
    registry = load(write(tmp_path, loopback)).app.registry
    assert registry.insecure is True and registry.insecure_host is None


def test_strategy_approvals_is_read_and_checked(tmp_path):
    base = ("app: {name: a, image: r.example.com/a, manifests: m, namespace: a}\n"
            "clusters:\n  - {id: c1, credentials: {kubeconfig: k.yaml}}\n"
            "strategies:\n  two:\n    waves: [[c1]]\n    gates: true\n")
    path = tmp_path / "clusters.yaml"
    path.write_text(base + "    approvals: 2\n")
    assert load(path).strategies["two"].approvals == 2
    path.write_text(base + "    approvals: 0\n")
    with pytest.raises(ConfigError, match=r"clusters\.yaml:\d+: strategies\.two\.approvals"):
        load(path)


def test_health_checks_are_checked_naming_the_field(tmp_path):
    ok = MINIMAL + textwrap.dedent("""\
        health:
          prometheus: {url: "http://127.0.0.1:9090/"}
          checks:
            - {name: errors, query: 'sum(x{cluster="${cluster}"})', max: 0.01}
        """)
    health = load(write(tmp_path, ok)).health
    assert health is not None and (health.url, health.timeout, health.interval) == \
        ("http://127.0.0.1:9090", 5.0, 5.0)
    assert [(c.name, c.max, c.min) for c in health.checks] == [("errors", 0.01, None)]
    assert "health.checks[0]: a check needs max, min or both" in error_of(
        tmp_path, ok.replace(", max: 0.01", ""))
    assert "health.checks[0].query: unknown placeholder ${app}" in error_of(
        tmp_path, ok.replace("${cluster}", "${app}"))
    assert "health.prometheus.url" in error_of(tmp_path, ok.replace("http://", "ftp://"))
