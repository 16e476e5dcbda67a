"""Credentials of the ledger's remote: kept out of `.git/config`, argv and every file.

`app.history.remote` may carry credentials (`https://ci-bot:TOKEN@git.example.com/h.git`,
as CI systems hand them out). Git would write such a URL into `.git/config` (0644) and
show it in its argv (`ps`). `split_remote` returns the URL without them, and the
environment that hands them to Git instead: an `Authorization: Basic` header scoped
to that URL, through Git's `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`
variables (Git >= 2.31) - never on disk, never in argv. Only the Git processes the
console starts get it (the environment of a process is readable by its user only).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit


def split_remote(remote: str,
                 environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, str], tuple[str, ...]]:
    """(the URL without credentials, the environment for Git, the secret values).

    URLs other than http(s) with a user or password in them come back unchanged, with
    no environment (`git@host:repo` names an SSH user, not a secret).
    """
    parts = urlsplit(remote)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return remote, {}, ()
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user, password = unquote(user), unquote(password)
    url = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    env = os.environ if environ is None else environ
    # Added after any GIT_CONFIG_* entries the caller's environment already holds.
    index = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    extra = {"GIT_CONFIG_COUNT": str(index + 1),
             f"GIT_CONFIG_KEY_{index}": f"http.{url}.extraHeader",
             f"GIT_CONFIG_VALUE_{index}": f"Authorization: Basic {token}"}
    secrets = tuple(s for s in (password, token, userinfo) if s and len(s) >= 4)
    return url, extra, secrets


__all__ = ["split_remote"]
