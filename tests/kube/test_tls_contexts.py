"""Clusters behind one CA share one TLS context (made once per process, not once per
cluster); clusters that would verify differently never do, and verification stays as
strict as each cluster's own kubeconfig says."""

from __future__ import annotations

import ssl

import pytest

from console.kube.client import ClusterError, KubeClient, new_api_client


def _client(cid: str, kubeconfig: dict) -> KubeClient:
    return KubeClient(cid, new_api_client(cid, kubeconfig), 10.0)


def _context(client: KubeClient) -> ssl.SSLContext:
    return client.api.rest_client.pool_manager.connection_pool_kw["ssl_context"]


def _aimed(kubeconfig: dict, server: str) -> dict:
    cluster = kubeconfig["clusters"][0]
    return {**kubeconfig, "clusters": [{**cluster, "cluster": {**cluster["cluster"],
                                                               "server": server}}]}


def test_one_context_per_ca_and_verification_unchanged(sim_fleet):
    fleet = sim_fleet(["a", "b"])
    other = sim_fleet(["c"])            # its own CA
    clients = {cid: _client(cid, f.kubeconfig(cid))
               for f, cid in ((fleet, "a"), (fleet, "b"), (other, "c"))}
    insecure_kc = other.kubeconfig("c")
    insecure_kc["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    insecure = _client("c", insecure_kc)
    wrong_ca = _client("a", _aimed(fleet.kubeconfig("a"), other.url("c")))
    try:
        assert _context(clients["a"]) is _context(clients["b"])
        assert _context(clients["c"]) is not _context(clients["a"])
        assert _context(insecure) is not _context(clients["c"])
        assert _context(clients["c"]).verify_mode == ssl.CERT_REQUIRED
        assert _context(insecure).verify_mode == ssl.CERT_NONE
        for client in (*clients.values(), insecure):
            assert client.request("GET", "/version").get("gitVersion")
        # Fleet a's CA, shared by two clusters, still refuses the other fleet's server.
        assert _context(wrong_ca) is _context(clients["a"])
        with pytest.raises(ClusterError, match="CERTIFICATE_VERIFY_FAILED"):
            wrong_ca.request("GET", "/version", retry=False)
    finally:
        for client in (*clients.values(), insecure, wrong_ca):
            client.close()


def _session_reused(stream) -> bool:
    return stream.response.connection.sock.session_reused


def test_a_watch_resumes_its_clusters_tls_session_and_no_other_clusters(sim_fleet):
    """A rollout's watches open new connections: they resume the TLS session of the
    cluster's request connection (no certificate exchange), and one cluster's session is
    never offered to another - even one behind the same CA and the same server process."""
    fleet = sim_fleet(["a", "b"])
    a, b = _client("a", fleet.kubeconfig("a")), _client("b", fleet.kubeconfig("b"))
    streams = []
    try:
        assert a.request("GET", "/version").get("gitVersion")
        streams.append(a.watch("/api/v1/namespaces/default/pods", {}, 5))
        assert _session_reused(streams[-1])
        # b's first connection: a full handshake, whatever a's server would accept.
        streams.append(b.watch("/api/v1/namespaces/default/pods", {}, 5))
        assert not _session_reused(streams[-1])
        assert b.request("GET", "/version").get("gitVersion")
        streams.append(b.watch("/api/v1/namespaces/default/configmaps", {}, 5))
        assert _session_reused(streams[-1])
        # A resumed connection serves as any other.
        assert a.request("GET", "/api/v1/namespaces/default/pods").get("kind") == "PodList"
    finally:
        for stream in streams:
            stream.close()
        a.close()
        b.close()
