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
