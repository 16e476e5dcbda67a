"""A one-shot reader's cluster client made without the Kubernetes client library.

`release-console status` reads each cluster once, over a plain connection
(`console.kube.direct_calls`), and exits. For the kubeconfig most clusters have - an
`https://` server, its CA as `certificate-authority-data` and a static bearer `token` -
that connection needs nothing of the client library: the server's address, the shared
TLS context for that CA (`tls_contexts.ca_context`: the very context the library's pool
would get, so the same CA, verify mode and host name check) and the `Authorization`
header the library would send (`Bearer <token>`). Building it here skips importing the
library (~0.25 s of CPU at every `status` start: it pulls in pydantic, requests, oauthlib,
dateutil...) and its per-cluster configuration objects and temporary CA file.

Anything else - a CA file, client certificates, `tokenFile`, exec plugins, auth
providers, basic auth, `insecure-skip-tls-verify`, `tls-server-name`, `proxy-url`, any
key this module does not know, or a proxy set in the environment - gets None from
`plain_api`, and the caller builds the library's client as before
(`console.kube.client.new_api_client`), which reads, checks and reports it as it always
did. The token stays in memory, as with the library.
"""

from __future__ import annotations

import base64
import binascii
import ssl
from collections.abc import Mapping
from typing import Any

import urllib3

from console.kube.tls_contexts import ca_context

# The keys a plain kubeconfig may carry in its cluster and user entries (`extensions`
# is free-form data the client library ignores too).
PLAIN_CLUSTER_KEYS = frozenset({"server", "certificate-authority-data", "extensions"})
PLAIN_USER_KEYS = frozenset({"token", "extensions"})


class PlainConfiguration:
    """What `KubeClient` reads of a client's configuration: the server and the token."""

    def __init__(self, host: str, authorization: str) -> None:
        self.host = host
        self._authorization = authorization

    def get_api_key_with_prefix(self, identifier: str, alias: str | None = None) -> str:
        """The `Authorization` header's value (`Bearer <token>`), as the library gives it."""
        return self._authorization


class PlainApi:
    """Stands in for the library's `ApiClient` in a one-shot `KubeClient`: no pool (every
    call goes over the client's plain connection), `direct` its (host, port, context)."""

    rest_client = None

    def __init__(self, host: str, authorization: str,
                 direct: tuple[str, int, ssl.SSLContext]) -> None:
        self.configuration = PlainConfiguration(host, authorization)
        self.direct = direct

    def close(self) -> None:
        """Nothing to release (the connection is the `KubeClient`'s)."""


def plain_api(kubeconfig: Mapping[str, Any], proxies: Mapping[str, str]) -> PlainApi | None:
    """A `PlainApi` for a resolved kubeconfig (one context, its cluster and user, as
    `console.credentials.resolve` returns it), or None when it needs the client library
    (see the module docstring). `proxies`: the environment's, as
    `client.environment_proxies` reads them (any proxy for https: None)."""
    if proxies.get("https") or proxies.get("all"):
        return None
    try:
        (cluster,), (user,), (context,) = (kubeconfig.get(k) or () for k in
                                           ("clusters", "users", "contexts"))
        if kubeconfig.get("current-context") != context["name"] or \
                context["context"].get("cluster") != cluster["name"] or \
                context["context"].get("user") != user["name"]:
            return None
        server_entry, user_entry = cluster["cluster"], user["user"]
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    if not isinstance(server_entry, Mapping) or not isinstance(user_entry, Mapping) or \
            not set(server_entry) <= PLAIN_CLUSTER_KEYS or \
            not set(user_entry) <= PLAIN_USER_KEYS:
        return None
    server, ca_data, token = (server_entry.get("server"),
                              server_entry.get("certificate-authority-data"),
                              user_entry.get("token"))
    if not (isinstance(server, str) and isinstance(ca_data, str) and
            isinstance(token, str) and token):
        return None
    host = server.rstrip("/")                     # as the library sets its host
    try:
        url = urllib3.util.parse_url(host)
        # The library writes base64.standard_b64decode(data) to the CA file its pool
        # loads; the same bytes give the same shared context.
        context = ca_context(base64.standard_b64decode(ca_data))
    except (ValueError, binascii.Error, ssl.SSLError, urllib3.exceptions.LocationParseError):
        return None
    if url.scheme != "https" or not url.host:
        return None
    return PlainApi(host, f"Bearer {token}", (url.host, url.port or 443, context))
