"""A one-shot client made without the Kubernetes client library (`console.kube.plain_api`,
what `release-console status` reads plain kubeconfigs with) reads what the library's
client reads and fails exactly as it fails - the same `ClusterError` text, status and
`unreachable` - over the same shared TLS context; every kubeconfig that is not plain (a
CA file, client certificates, a token file, exec, basic auth, skipped or renamed TLS
checks, a proxy) is left to the library."""

from __future__ import annotations

import copy
import socket
from typing import Any

import pytest

from console.kube.client import ClusterError, KubeClient, new_api_client
from console.kube.direct_calls import direct_target
from console.kube.plain_api import plain_api


def _library(cid: str, kubeconfig: dict) -> KubeClient:
    client = KubeClient(cid, new_api_client(cid, kubeconfig), 10.0)
    client.keep_sessions = False
    return client


def _plain(cid: str, kubeconfig: dict) -> KubeClient:
    api = plain_api(kubeconfig, {})
    assert api is not None, kubeconfig
    client = KubeClient(cid, api, 10.0)
    client.keep_sessions = False
    return client


def _aimed(kubeconfig: dict, server: str) -> dict:
    aimed = copy.deepcopy(kubeconfig)
    aimed["clusters"][0]["cluster"]["server"] = server
    return aimed


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _outcome(client: KubeClient, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return client.request(method, path, **kwargs)
    except ClusterError as exc:
        return (exc.reason, exc.status, exc.unreachable, dict(exc.details))
    finally:
        client.close()


def test_a_plain_client_reads_and_fails_as_the_librarys_client(sim_fleet):
    fleet = sim_fleet(["a", "slow", "broken"], seed=7)
    other = sim_fleet(["c"])                                     # another CA
    fleet.set_faults("slow", latency=3.0)
    fleet.set_faults("broken", error_rate=1.0, error_codes=[500])
    wrong_token = fleet.kubeconfig("a")
    wrong_token["users"][0]["user"]["token"] = "not-the-token"
    configmaps = "/api/v1/namespaces/default/configmaps"
    cases = {
        "version": (fleet.kubeconfig("a"), "GET", "/version", {}),
        "a list": (fleet.kubeconfig("a"), "GET", "/api/v1/namespaces", {}),
        "not found": (fleet.kubeconfig("a"), "GET", "/api/v1/namespaces/nowhere", {}),
        "wrong token": (wrong_token, "GET", configmaps, {}),
        "refused": (_aimed(fleet.kubeconfig("a"), f"https://127.0.0.1:{_closed_port()}"),
                    "GET", configmaps, {}),
        "wrong CA": (_aimed(fleet.kubeconfig("a"), other.url("c")), "GET", configmaps,
                     {"retry": False}),
        "too slow": (fleet.kubeconfig("slow"), "GET", configmaps, {"timeout": 0.5}),
        "500s": (fleet.kubeconfig("broken"), "GET", configmaps, {}),
    }
    seen = {}
    for name, (kubeconfig, method, path, kwargs) in cases.items():
        library = _outcome(_library("a", kubeconfig), method, path, **kwargs)
        plain = _outcome(_plain("a", kubeconfig), method, path, **kwargs)
        if name == "a list":                 # the same items (their list's version moves)
            library, plain = library["items"], plain["items"]
        assert plain == library, name
        seen[name] = plain
    assert seen["version"]["gitVersion"]
    assert seen["not found"][:3] == ('API error 404: namespaces "nowhere" not found', 404,
                                     False), seen["not found"]
    assert seen["wrong token"][:2] == ("unauthorized (401): the cluster rejected the "
                                       "credentials", 401)
    assert seen["refused"][0].endswith(": connection refused") and seen["refused"][2]
    assert "CERTIFICATE_VERIFY_FAILED" in seen["wrong CA"][0] and seen["wrong CA"][2]
    assert seen["too slow"][:3] == ("unreachable (https://127.0.0.1:%d): timed out "
                                    "waiting for the API server" % fleet.port("slow"),
                                    None, True)
    assert seen["500s"][1] == 500 and not seen["500s"][2]


def test_a_plain_client_verifies_with_the_librarys_own_tls_context(sim_fleet):
    # The one context the library's pool gets for that CA: the same CA, verify mode and
    # host name check, shared (not one more context per cluster).
    kubeconfig = sim_fleet(["a"]).kubeconfig("a")
    library = new_api_client("a", kubeconfig)
    try:
        host, port, context = plain_api(kubeconfig, {}).direct
        assert (host, port, context) == direct_target(library)
        assert context.check_hostname and context.verify_mode.name == "CERT_REQUIRED"
    finally:
        library.close()


def _cluster(kubeconfig: dict) -> dict:
    return kubeconfig["clusters"][0]["cluster"]


def _user(kubeconfig: dict) -> dict:
    return kubeconfig["users"][0]["user"]


@pytest.mark.parametrize("change", [
    lambda k: _cluster(k).update({"tls-server-name": "localhost"}),
    lambda k: _cluster(k).update({"insecure-skip-tls-verify": True}),
    lambda k: _cluster(k).update({"proxy-url": "http://127.0.0.1:3128"}),
    lambda k: _cluster(k).update({"certificate-authority": "/etc/ca.crt"}),
    lambda k: _cluster(k).pop("certificate-authority-data"),
    lambda k: _cluster(k).update({"certificate-authority-data": "bm90IGEgQ0E="}),
    lambda k: _cluster(k).update({"server": _cluster(k)["server"].replace("https", "http")}),
    lambda k: _user(k).update({"client-certificate-data": "eA==", "client-key-data": "eA=="}),
    lambda k: _user(k).update({"tokenFile": "/var/run/token"}),
    lambda k: _user(k).update({"exec": {"command": "get-token"}}),
    lambda k: _user(k).update({"username": "u", "password": "p"}),
    lambda k: _user(k).pop("token"),
    lambda k: k["contexts"].append({"name": "other", "context": {"cluster": "x"}}),
    lambda k: k.update({"current-context": "elsewhere"}),
], ids=["tls-server-name", "insecure", "proxy-url", "CA file", "no CA", "not a CA", "http",
        "client certificate", "token file", "exec", "basic auth", "no token",
        "two contexts", "another context"])
def test_a_kubeconfig_that_is_not_plain_is_left_to_the_library(sim_fleet, change):
    kubeconfig = sim_fleet(["a"]).kubeconfig("a")
    assert plain_api(kubeconfig, {}) is not None
    change(kubeconfig)
    assert plain_api(kubeconfig, {}) is None


def test_a_proxy_in_the_environment_leaves_the_kubeconfig_to_the_library(sim_fleet):
    kubeconfig = sim_fleet(["a"]).kubeconfig("a")
    assert plain_api(kubeconfig, {"no": "example.com"}) is not None
    assert plain_api(kubeconfig, {"https": "http://127.0.0.1:3128"}) is None
    assert plain_api(kubeconfig, {"all": "socks5://127.0.0.1:1080"}) is None
