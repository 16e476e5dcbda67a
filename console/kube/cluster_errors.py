"""What a failed call to one cluster says: `ClusterError`, and `describe`, which turns any
failure of a call (the client library's `ApiException`, urllib3's and the socket's
errors) into one - the cluster named, the HTTP status and the server's reason or
"unreachable" and why, never a token, a URL's query or kubeconfig content.

`console.kube.client` makes its calls with these (and its importers still find
`ClusterError` and `describe` there).
"""

from __future__ import annotations

import errno
import json
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import urllib3

if TYPE_CHECKING:
    from kubernetes.client.rest import ApiException


class ClusterError(Exception):
    """A call to one cluster failed; the message is safe to show and to record."""

    def __init__(self, cluster: str, message: str, status: int | None = None,
                 unreachable: bool = False, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{cluster}: {message}")
        self.cluster = cluster
        self.reason = message
        self.status = status
        self.unreachable = unreachable
        # The server's `Status.details` (kind, name, group of what was missing or refused).
        self.details: Mapping[str, Any] = details or {}


def _status(data: bytes | str | None) -> dict[str, Any]:
    """The server's `Status` object, when the body is one (else {})."""
    try:
        body = json.loads(data or b"{}")
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def is_api_exception(exc: BaseException) -> bool:
    """Whether `exc` is the client library's `ApiException`. Asked of the library only
    once it is loaded: before that, none can exist - a process whose clusters all read
    over plain connections (`console.kube.plain_api`) never imports it, a quarter of a
    second of `release-console status`'s start."""
    module = sys.modules.get("kubernetes.client.exceptions")
    return module is not None and isinstance(exc, module.ApiException)


def answer_error(cluster: str, status: int, reason: Any, body: bytes | str | None,
                 server: str = "") -> ClusterError:
    """The `ClusterError` of an answer that is not a success (`status` 0: the client
    library's word for a TLS failure, `reason` its text): what `describe` says of the
    library's `ApiException` for it, without making one."""
    if status == 401:
        return ClusterError(cluster, "unauthorized (401): the cluster rejected the "
                            "credentials", 401)
    if not status:
        # The client reports TLS failures as status 0, as "SSLError\n<urllib3's text>":
        # keep the innermost reason (e.g. CERTIFICATE_VERIFY_FAILED), never the URL.
        return ClusterError(cluster, f"TLS error talking to {server or 'the API server'}: "
                            f"{_tls_reason(str(reason or ''))}", None, unreachable=True)
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")          # as the library's ApiException reads it
        except UnicodeDecodeError:
            body = None
    found = _status(body)
    detail = str(found.get("message", "")) or str(reason or "")
    details = found.get("details") if isinstance(found.get("details"), dict) else None
    return ClusterError(cluster, f"API error {status}: {detail}".rstrip(": "), status,
                        details=details)


def describe(cluster: str, exc: BaseException, server: str = "") -> ClusterError:
    """Map any failure of a call to `cluster` to a `ClusterError` without secrets."""
    if isinstance(exc, ClusterError):
        return exc
    if is_api_exception(exc):
        api_exc: ApiException = exc  # type: ignore[assignment]
        return answer_error(cluster, api_exc.status or 0, api_exc.reason, api_exc.body,
                            server)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        where = f" ({server})" if server else ""
        reason = getattr(exc, "reason", None) or exc
        # NewConnectionError subclasses ConnectTimeoutError: test it first.
        if isinstance(reason, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError)):
            # urllib3 raises NewConnectionError `from` the socket's OSError: its errno
            # says whether the port refused, not the message text.
            cause = reason if isinstance(reason, ConnectionRefusedError) else reason.__cause__
            refused = isinstance(cause, ConnectionRefusedError) or \
                getattr(cause, "errno", None) == errno.ECONNREFUSED
            text = "connection refused" if refused else "cannot connect to the API server"
        elif isinstance(reason, urllib3.exceptions.ReadTimeoutError):
            text = "timed out waiting for the API server"
        elif isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
            text = "timed out connecting to the API server"
        elif isinstance(exc, urllib3.exceptions.SSLError):
            text = "TLS error"
        else:
            text = "connection lost"
        return ClusterError(cluster, f"unreachable{where}: {text}", None, unreachable=True)
    return ClusterError(cluster, f"{type(exc).__name__}: {exc}")


def _tls_reason(text: str) -> str:
    """`[SSL: CERTIFICATE_VERIFY_FAILED] ...` out of urllib3's wrapped SSLError text."""
    found = re.findall(r"\[SSL: [A-Z_]+\][^'\"]*", text)
    if found:
        return found[-1].strip()
    first = text.splitlines()[0] if text else ""
    return first or "TLS error"


__all__ = ["ClusterError", "answer_error", "describe", "is_api_exception"]
