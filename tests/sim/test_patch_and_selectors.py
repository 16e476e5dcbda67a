"""Pure parts of the simulator: the patch kinds, label/field selectors, rollout arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console.sim.deployments import comparable_template, resolve_int_or_percent, template_hash
from console.sim.patch import PatchError, apply, json_patch, merge_patch, strategic_merge
from console.sim.store import SelectorError, field_matcher, label_matcher

POD = {"spec": {"containers": [
    {"name": "app", "image": "app:v1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
     "ports": [{"containerPort": 8080}]},
    {"name": "sidecar", "image": "proxy:v1"}]}}


def test_strategic_merge_as_kubectl_set_image_sends_it():
    patch = {"spec": {"$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                      "containers": [{"name": "sidecar", "image": "proxy:v2"}]}}
    out = strategic_merge(POD, patch)
    assert [c["image"] for c in out["spec"]["containers"]] == ["app:v1", "proxy:v2"]
    assert out["spec"]["containers"][0]["env"] == POD["spec"]["containers"][0]["env"]
    assert POD["spec"]["containers"][1]["image"] == "proxy:v1"  # input untouched


def test_strategic_merge_directives():
    out = strategic_merge(POD, {"spec": {"containers": [
        {"name": "app", "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}]},
        {"name": "sidecar", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["app"]
    assert out["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}, {"name": "C", "value": "3"}]
    replaced = strategic_merge(POD, {"spec": {"$patch": "replace", "containers": []}})
    assert replaced == {"spec": {"containers": []}}
    retained = strategic_merge({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
                               {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}})
    assert retained == {"strategy": {"type": "Recreate"}}
    assert strategic_merge({"a": 1, "b": 2}, {"a": None}) == {"b": 2}
    assert strategic_merge({"finalizers": ["x"]}, {"finalizers": ["y"]}) == {"finalizers": ["x", "y"]}
    args = strategic_merge({"args": ["a", "b"]}, {"args": ["c"]})
    assert args == {"args": ["c"]}  # lists without a merge key are replaced
    with pytest.raises(PatchError):
        strategic_merge(POD, {"spec": {"containers": [{"image": "no-name"}]}})


def test_json_patch_like_rollout_undo():
    template = {"metadata": {"labels": {"app": "web"}, "creationTimestamp": None}, "spec": {"containers": []}}
    doc = {"metadata": {"annotations": {"a": "1"}}, "spec": {"template": {"old": True}}}
    out = json_patch(doc, [{"op": "replace", "path": "/spec/template", "value": template},
                           {"op": "replace", "path": "/metadata/annotations", "value": {"b": "2"}}])
    assert out["spec"]["template"] == template and out["metadata"]["annotations"] == {"b": "2"}
    out = json_patch({"l": [1, 3]}, [{"op": "add", "path": "/l/1", "value": 2}, {"op": "add", "path": "/l/-", "value": 4},
                                     {"op": "copy", "from": "/l/0", "path": "/first"},
                                     {"op": "move", "from": "/first", "path": "/moved"},
                                     {"op": "remove", "path": "/l/0"}, {"op": "test", "path": "/moved", "value": 1}])
    assert out == {"l": [2, 3, 4], "moved": 1}
    with pytest.raises(PatchError) as err:
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    assert err.value.code == 422
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "replace", "path": "/missing", "value": 2}])
    with pytest.raises(PatchError) as err:
        json_patch({"a": 1}, {"op": "add"})
    assert err.value.code == 400


def test_merge_patch_rfc7386_examples():
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=3),
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=3), children, max_size=3), max_leaves=10)


@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4),
       st.dictionaries(st.text(max_size=3), json_values, max_size=4))
def test_merge_patch_is_idempotent(target, patch):
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


def test_apply_removes_what_the_manager_no_longer_applies():
    live = {"metadata": {"labels": {"app": "web", "team": "red", "other": "x"}},
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}
    previous = {"metadata": {"labels": {"app": "web", "team": "red"}},
                "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}
    applied = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "a:2"}]}}
    out = apply(live, applied, previous)
    assert out["metadata"]["labels"] == {"app": "web", "other": "x"}
    assert out["spec"]["containers"] == [{"name": "a", "image": "a:2"}]


def test_label_and_field_selectors():
    match = label_matcher("app=web,tier!=db,env in (prod, staging),!legacy,track")
    assert match({"app": "web", "env": "prod", "track": "stable"})
    assert not match({"app": "web", "env": "dev", "track": "stable"})
    assert not match({"app": "web", "env": "prod", "track": "x", "legacy": "1"})
    assert not match({"app": "web", "env": "prod"})
    assert label_matcher("env notin (dev)")({"env": "prod"}) and label_matcher(None)({})
    with pytest.raises(SelectorError):
        label_matcher("a b c")
    fmatch, name = field_matcher("metadata.name=web,metadata.namespace==shop")
    assert name == "web"
    assert fmatch({"metadata": {"name": "web", "namespace": "shop"}})
    assert not fmatch({"metadata": {"name": "api", "namespace": "shop"}})
    phase, _ = field_matcher("status.phase!=Running")
    assert phase({"metadata": {}, "status": {"phase": "Pending"}})


def test_rollout_arithmetic_and_template_identity():
    assert resolve_int_or_percent("25%", 3, round_up=True) == 1
    assert resolve_int_or_percent("25%", 3, round_up=False) == 0
    assert resolve_int_or_percent(2, 10, round_up=False) == 2
    assert resolve_int_or_percent("100%", 3, round_up=True) == 3
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}
    round_trip = {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}, "creationTimestamp": None},
                  "spec": {"containers": [{"name": "a", "image": "a:1", "resources": {},
                                           "imagePullPolicy": "IfNotPresent"}],
                           "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}
    assert comparable_template(template) == comparable_template(round_trip)
    assert template_hash(template) == template_hash(round_trip)
    changed = {"metadata": template["metadata"], "spec": {"containers": [{"name": "a", "image": "a:2"}]}}
    assert template_hash(changed) != template_hash(template)
