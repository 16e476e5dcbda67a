"""TLS session resumption against the real kube-apiserver (Go's TLS) as against the
simulator: a watch's new connection resumes the session of the cluster's request
connection, and is as good as a fully negotiated one (console.kube.tls_contexts)."""

from __future__ import annotations

from console.kube.client import KubeClient, new_api_client


def test_a_watch_resumes_the_request_connections_session(stage):
    client = KubeClient("c0", new_api_client("c0", stage.fleet.kubeconfig("c0")), 10.0)
    stream = None
    try:
        assert client.request("GET", "/version").get("gitVersion")
        stream = client.watch("/api/v1/namespaces", {"fieldSelector": "metadata.name=default"}, 5)
        assert stream.response.connection.sock.session_reused
        events = stream.events()
        kind, obj = next(events)        # the watch answers on the resumed connection
        assert kind == "ADDED" and obj["metadata"]["name"] == "default"
    finally:
        if stream is not None:
            stream.close()
        client.close()
