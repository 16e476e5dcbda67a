"""The simulator on the wire: discovery, OpenAPI, watch streams, streaming lists, 410 Gone,
Table output, protobuf bodies, patches - checked with raw HTTPS requests."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

from console.sim import SimFleet
from console.sim.store import Gone, Store
from tests.sim.conftest import deployment


class Raw:
    """Raw HTTPS requests to one simulated cluster with its full-rights token."""

    def __init__(self, fleet: SimFleet, cluster_id: str) -> None:
        self.fleet, self.cid = fleet, cluster_id

    def conn(self) -> http.client.HTTPSConnection:
        assert self.fleet.tls is not None
        return http.client.HTTPSConnection("127.0.0.1", self.fleet.port(self.cid), timeout=10,
                                           context=self.fleet.tls.client_context())

    def request(self, method: str, path: str, body: Any = None, ctype: str | None = "application/json",
                accept: str = "application/json") -> tuple[int, dict[str, str], Any]:
        conn = self.conn()
        headers = {"Authorization": f"Bearer {self.fleet.admin_token(self.cid)}", "Accept": accept}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            if ctype:
                headers["Content-Type"] = ctype
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        ct = resp.getheader("Content-Type", "")
        return resp.status, dict(resp.getheaders()), json.loads(raw) if "json" in ct else raw.decode()

    def stream(self, path: str, until: int, timeout: float = 5) -> list[dict[str, Any]]:
        """Read watch events (JSON lines) until `until` events came or the stream ended."""
        conn = self.conn()
        conn.request("GET", path, headers={"Authorization": f"Bearer {self.fleet.admin_token(self.cid)}"})
        resp = conn.getresponse()
        assert resp.status == 200
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(events) < until and time.monotonic() < deadline:
            line = resp.readline()
            if not line:
                break
            events.append(json.loads(line))
        conn.close()
        return events


@pytest.fixture
def raw(sim_fleet) -> Raw:
    fleet = sim_fleet(["a"], readiness_delay=0.2, jitter=0)
    r = Raw(fleet, "a")
    assert r.request("POST", "/api/v1/namespaces", {"metadata": {"name": "shop"}})[0] == 201
    return r


def test_discovery_and_openapi(raw):
    status, _, body = raw.request("GET", "/apis/apps/v1")
    assert status == 200 and body["kind"] == "APIResourceList"
    by_name = {r["name"]: r for r in body["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert {"deployments/status", "deployments/scale", "replicasets/scale"} <= set(by_name)
    assert "watch" in by_name["deployments"]["verbs"] and by_name["deployments"]["namespaced"]
    core = {r["name"]: r for r in raw.request("GET", "/api/v1")[2]["resources"]}
    assert core["namespaces"]["shortNames"] == ["ns"] and not core["namespaces"]["namespaced"]
    groups = [g["name"] for g in raw.request("GET", "/apis")[2]["groups"]]
    assert {"apps", "authorization.k8s.io", "coordination.k8s.io"} <= set(groups)
    index = raw.request("GET", "/openapi/v3")[2]["paths"]
    url = index["apis/apps/v1"]["serverRelativeURL"]
    doc = raw.request("GET", url)[2]
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert raw.request("GET", "/version/")[2]["minor"] == "32"


def test_streaming_list_ends_initial_events_with_a_bookmark(raw):
    raw.request("POST", "/apis/apps/v1/namespaces/shop/deployments", deployment())
    events = raw.stream("/apis/apps/v1/namespaces/shop/deployments?allowWatchBookmarks=true"
                        "&fieldSelector=metadata.name%3Dweb&resourceVersionMatch=NotOlderThan"
                        "&sendInitialEvents=true&timeoutSeconds=5&watch=true", until=3)
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "web"
    bookmark = events[1]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["object"]["kind"] == "Deployment"
    assert events[2]["type"] == "MODIFIED"  # the rollout goes on


def test_watch_from_a_resource_version_and_410_when_too_old(raw):
    status, _, listed = raw.request("GET", "/api/v1/namespaces/shop/configmaps?resourceVersion=0")
    rv = listed["metadata"]["resourceVersion"]
    raw.request("POST", "/api/v1/namespaces/shop/configmaps", {"metadata": {"name": "one"}, "data": {"k": "1"}})
    raw.request("POST", "/api/v1/namespaces/shop/configmaps", {"metadata": {"name": "two"}, "data": {"k": "2"}})
    events = raw.stream(f"/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion={rv}"
                        "&timeoutSeconds=1", until=5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "one"), ("ADDED", "two")]
    only = raw.stream(f"/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion={rv}"
                      "&fieldSelector=metadata.name%3Dtwo&timeoutSeconds=1", until=5)
    assert [e["object"]["metadata"]["name"] for e in only] == ["two"]
    gone = raw.stream("/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion=5&timeoutSeconds=1", until=2)
    assert gone[0]["type"] == "ERROR" and gone[0]["object"]["code"] == 410
    assert gone[0]["object"]["reason"] == "Expired"


def test_watch_timeout_seconds_ends_the_stream(raw):
    started = time.monotonic()
    events = raw.stream("/api/v1/namespaces/shop/configmaps?watch=true&timeoutSeconds=1", until=10, timeout=5)
    assert events == [] and 0.9 < time.monotonic() - started < 3


def test_table_for_kubectl_get(raw):
    raw.request("POST", "/apis/apps/v1/namespaces/shop/deployments", deployment())
    status, _, table = raw.request("GET", "/apis/apps/v1/namespaces/shop/deployments",
                                   accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:4] == ["Name", "Ready", "Up-to-date", "Available"]
    assert table["rows"][0]["cells"][0] == "web"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_protobuf_namespace_body(raw):
    meta = _field(1, b"proto") + _field(11, _field(1, b"team") + _field(2, b"red"))
    body = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"Namespace")) + _field(2, _field(1, meta))
    status, _, ns = raw.request("POST", "/api/v1/namespaces", body, ctype="application/vnd.kubernetes.protobuf")
    assert status == 201 and ns["metadata"]["name"] == "proto"
    assert ns["metadata"]["labels"]["team"] == "red"


def test_request_without_content_type_is_json(raw):
    review = {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "shop"}}}
    status, _, body = raw.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review,
                                  ctype=None)
    assert status == 201 and body["status"]["allowed"] is True


def test_patch_kinds_and_generation(raw):
    path = "/apis/apps/v1/namespaces/shop/deployments"
    raw.request("POST", path, deployment())
    status, _, d = raw.request("PATCH", f"{path}/web", {"metadata": {"labels": {"tier": "front"}}},
                               ctype="application/merge-patch+json")
    assert status == 200 and d["metadata"]["labels"]["tier"] == "front" and d["metadata"]["generation"] == 1
    _, _, d = raw.request("PATCH", f"{path}/web", [{"op": "replace", "path": "/spec/replicas", "value": 2}],
                          ctype="application/json-patch+json")
    assert d["spec"]["replicas"] == 2 and d["metadata"]["generation"] == 2
    status, _, err = raw.request("PATCH", f"{path}/web", [{"op": "test", "path": "/spec/replicas", "value": 9}],
                                 ctype="application/json-patch+json")
    assert status == 422 and err["kind"] == "Status"
    _, _, scale = raw.request("GET", f"{path}/web/scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    _, _, scale = raw.request("PATCH", f"{path}/web/scale", {"spec": {"replicas": 4}},
                              ctype="application/merge-patch+json")
    assert scale["spec"]["replicas"] == 4
    # server-side apply drops what the same manager applied before and no longer applies
    applied = deployment()
    applied["metadata"]["annotations"] = {"team": "red"}
    raw.request("PATCH", f"{path}/web?fieldManager=ci", applied, ctype="application/apply-patch+yaml")
    del applied["metadata"]["annotations"]
    _, _, d = raw.request("PATCH", f"{path}/web?fieldManager=ci", applied, ctype="application/apply-patch+yaml")
    assert "team" not in (d["metadata"].get("annotations") or {})
    assert d["metadata"]["labels"]["tier"] == "front"  # another manager's field stays
    status, _, _ = raw.request("PATCH", f"{path}/web", b"{}", ctype="text/plain")
    assert status == 415
    status, _, err = raw.request("DELETE", f"{path}/web/status")
    assert status == 405 and err["kind"] == "Status"
    assert raw.request("GET", f"{path}/web")[0] == 200  # still there


def test_store_backlog_expiry_raises_gone():
    store = Store(backlog=3)
    for n in range(5):
        store.put("/configmaps", {"metadata": {"name": f"c{n}", "namespace": "x"}})
    with pytest.raises(Gone, match="too old resource version: 1001"):
        store.since("/configmaps", 1001)
    assert [o["metadata"]["name"] for _, o in store.since("/configmaps", 1002)] == ["c2", "c3", "c4"]
    # the window is per resource, as the API server's watch cache: busy pods do not expire
    # a quiet resource's resourceVersions
    for n in range(10):
        store.put("/pods", {"metadata": {"name": f"p{n}", "namespace": "x"}})
    assert [o["metadata"]["name"] for _, o in store.since("/configmaps", 1004)] == ["c4"]
    assert store.since("/configmaps", 1005) == []


def test_protobuf_of_an_unknown_kind_is_415(raw):
    body = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"Service")) + \
        _field(2, _field(1, _field(1, b"web")))
    status, _, err = raw.request("POST", "/api/v1/namespaces/shop/services", body,
                                 ctype="application/vnd.kubernetes.protobuf")
    assert status == 415 and err["reason"] == "UnsupportedMediaType"
    # a field the decoder has no name for is refused too, in the object or in its metadata
    meta = _field(1, b"odd") + _field(99, b"surprise")
    body = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + _field(2, _field(1, meta))
    assert raw.request("POST", "/api/v1/namespaces/shop/configmaps", body,
                       ctype="application/vnd.kubernetes.protobuf")[0] == 415
    body = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + \
        _field(2, _field(1, _field(1, b"odd2")) + _field(9, b"surprise"))
    assert raw.request("POST", "/api/v1/namespaces/shop/configmaps", body,
                       ctype="application/vnd.kubernetes.protobuf")[0] == 415


def test_quiet_watches_get_periodic_bookmarks(raw):
    raw.fleet.set_faults("a", bookmark_interval=0.3)
    events = raw.stream("/api/v1/namespaces/shop/configmaps?watch=true&allowWatchBookmarks=true"
                        "&timeoutSeconds=2", until=2)
    assert [e["type"] for e in events] == ["BOOKMARK", "BOOKMARK"]
    assert "annotations" not in events[0]["object"]["metadata"]
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) > 1000
    without = raw.stream("/api/v1/namespaces/shop/configmaps?watch=true&timeoutSeconds=1", until=1)
    assert without == []
