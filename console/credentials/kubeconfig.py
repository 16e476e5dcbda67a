"""A kubeconfig read, cut down to one context, and checked against the cluster's rules.

`parse_kubeconfig` reads the text (YAML, or base64 of it); `select_context` keeps only the
chosen context with its cluster and user; `enforce` applies the fleet file's pins and
opt-ins and returns what the client gets:

- the API server must be the pinned `server`; the CA certificate must be the pinned
  `ca_sha256` - and the client then gets exactly the verified bytes, inline;
- a kubeconfig naming both a file and inline data for the CA, the client certificate or
  the key is refused (the client would use one, the checks might read the other);
- `insecure-skip-tls-verify: true` only with `credentials.allow_insecure_tls`;
- the user authenticates by token (or token file), client certificate and key, or basic
  auth. Anything that runs a program or fetches a token - an `exec` plugin, an
  `auth-provider` (gcp, oidc refresh, `cmd-path`) - only with `allow_exec` /
  `allow_auth_provider`, and an oidc refresh only with the IdP's CA (the client would
  otherwise refresh without TLS verification).

What is allowed is returned as plain sentences, for `check` to name. Errors name the
cluster and the source, never any of the kubeconfig's content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from console.config import Credentials
from console.credentials.errors import CredentialsError

# Kubeconfig fields that name files; relative paths are relative to the kubeconfig file.
_CLUSTER_FILE_FIELDS = ("certificate-authority",)
_USER_FILE_FIELDS = ("client-certificate", "client-key", "tokenFile")
# libyaml's safe loader when PyYAML has it: the pure-Python one costs ~3 ms of CPU per
# kubeconfig, and a release of N clusters parses 2N of them.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# What the client is given of a cluster entry and of a user entry (other keys - such as
# `extensions` or impersonation - the Python client does not use).
_CLUSTER_KEYS = ("server", "certificate-authority", "certificate-authority-data",
                 "insecure-skip-tls-verify", "tls-server-name", "proxy-url")
_STATIC_USER_KEYS = ("token", "tokenFile", "client-certificate", "client-certificate-data",
                     "client-key", "client-key-data", "username", "password")


def parse_kubeconfig(cid: str, source: str, text: str) -> dict:
    """Parse kubeconfig text (YAML, or YAML encoded in base64) into a checked dict.

    Errors give a line and column, never the offending text.
    """
    data = _yaml_mapping(cid, source, text)
    if data is None:
        decoded = _base64_text(text)
        data = _yaml_mapping(cid, source, decoded) if decoded is not None else None
        if data is None:
            raise CredentialsError(cid, source,
                                   "malformed kubeconfig: neither a YAML mapping nor base64 of one")
    for section, inner in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
        entries = data.get(section) or []
        if not isinstance(entries, list):
            raise CredentialsError(cid, source, f"malformed kubeconfig: {section} is not a list")
        for index, entry in enumerate(entries):
            if (not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str)
                    or not isinstance(entry.get(inner) or {}, Mapping)):
                raise CredentialsError(
                    cid, source,
                    f"malformed kubeconfig: {section}[{index}] needs a name and a {inner} mapping")
    if not data.get("contexts"):
        raise CredentialsError(cid, source, "malformed kubeconfig: it has no contexts")
    return data


def _yaml_mapping(cid: str, source: str, text: str) -> dict | None:
    """The YAML mapping in `text`; None when it is a plain scalar (maybe base64)."""
    try:
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (libyaml when built)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # Only the position: the YAML error text quotes the line, which may hold a secret.
        raise CredentialsError(cid, source, f"malformed kubeconfig: invalid YAML{where}") from None
    if isinstance(data, dict):
        return data
    if isinstance(data, str):
        return None
    raise CredentialsError(cid, source, "malformed kubeconfig: not a YAML mapping")


def _base64_text(text: str) -> str | None:
    compact = "".join(text.split())
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _named(entries: list, name: str, inner: str) -> dict | None:
    for entry in entries or []:
        if entry.get("name") == name:
            return dict(entry.get(inner) or {})
    return None


def select_context(cid: str, source: str, kubeconfig: Mapping[str, Any], context: str | None,
                   base_dir: Path | None = None) -> dict:
    """A new kubeconfig with only `context` (default: the current one), its cluster and user.

    File paths in the cluster and user entries are made absolute against `base_dir` (the
    kubeconfig file's directory), as kubectl resolves them.
    """
    contexts = kubeconfig.get("contexts") or []
    names = [entry["name"] for entry in contexts]
    name = context or kubeconfig.get("current-context") or (names[0] if len(names) == 1 else None)
    if not name:
        raise CredentialsError(cid, source,
                               f"no context given and no current-context set (contexts: "
                               f"{', '.join(names)})")
    ctx = _named(contexts, name, "context")
    if ctx is None:
        raise CredentialsError(cid, source,
                               f"context {name!r} not found (contexts: {', '.join(names)})")
    cluster_name = ctx.get("cluster")
    cluster = _named(kubeconfig.get("clusters") or [], cluster_name, "cluster") if cluster_name else None
    if cluster is None or not cluster.get("server"):
        raise CredentialsError(cid, source,
                               f"context {name!r}: cluster {cluster_name!r} not found or has no server")
    user_name = ctx.get("user")
    user: dict = {}
    if user_name:
        found = _named(kubeconfig.get("users") or [], user_name, "user")
        if found is None:
            raise CredentialsError(cid, source, f"context {name!r}: user {user_name!r} not found")
        user = found
    if base_dir is not None:
        _absolute_paths(cluster, _CLUSTER_FILE_FIELDS, base_dir)
        _absolute_paths(user, _USER_FILE_FIELDS, base_dir)
    user_name = user_name or "user"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": name, "context": {**ctx, "user": user_name}}],
        "current-context": name,
    }


def _absolute_paths(entry: dict, fields: tuple[str, ...], base_dir: Path) -> None:
    for field in fields:
        value = entry.get(field)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            entry[field] = str(base_dir / value)


def enforce(cid: str, source: str, kubeconfig: Mapping[str, Any],
            creds: Credentials, fleet_file: str = "the fleet file"
            ) -> tuple[dict, tuple[str, ...]]:
    """The kubeconfig the client gets, and what it was allowed to do beyond the plain
    rules (sentences naming the opt-in); `CredentialsError` when it breaks a rule.
    `fleet_file` is the fleet file in use, named where a pin of it refuses."""
    cluster = dict(kubeconfig["clusters"][0]["cluster"])
    user = dict(kubeconfig["users"][0]["user"])
    for entry, field in ((cluster, "certificate-authority"), (user, "client-certificate"),
                         (user, "client-key")):
        if field in entry and f"{field}-data" in entry:
            raise CredentialsError(cid, source, f"refused: the kubeconfig gives both {field} "
                                   f"and {field}-data; keep one")
    actual = str(cluster.get("server", ""))
    if creds.server and _normal_url(actual) != _normal_url(creds.server):
        raise CredentialsError(cid, source,
                               f"refused: the kubeconfig points at {actual}, but {fleet_file} "
                               f"pins the API server {creds.server}")
    allowed: list[str] = []
    skip = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(skip, bool):
        raise CredentialsError(cid, source, "malformed kubeconfig: insecure-skip-tls-verify "
                               "is not true or false")
    if skip:
        if creds.ca_sha256:
            raise CredentialsError(cid, source, "refused: the CA is pinned but the kubeconfig "
                                   "skips TLS verification")
        if not creds.allow_insecure_tls:
            raise CredentialsError(cid, source, "refused: the kubeconfig skips TLS verification "
                                   "(insecure-skip-tls-verify); set credentials."
                                   "allow_insecure_tls: true for this cluster to allow it")
        allowed.append("TLS verification of the API server is off (insecure-skip-tls-verify, "
                       "allowed by credentials.allow_insecure_tls)")
    if creds.ca_sha256:
        pem = _verified_ca(cid, source, cluster, creds.ca_sha256, fleet_file)
        # The client gets the bytes that were verified, not the file read again later.
        cluster.pop("certificate-authority", None)
        cluster["certificate-authority-data"] = base64.b64encode(pem).decode()
    user = _user(cid, source, user, creds, allowed)
    out = dict(kubeconfig)
    out["clusters"] = [{**kubeconfig["clusters"][0],
                        "cluster": {k: cluster[k] for k in _CLUSTER_KEYS if k in cluster}}]
    out["users"] = [{**kubeconfig["users"][0], "user": user}]
    return out, tuple(allowed)


def _user(cid: str, source: str, user: Mapping[str, Any], creds: Credentials,
          allowed: list[str]) -> dict:
    out = {k: user[k] for k in _STATIC_USER_KEYS if k in user}
    if "exec" in user:
        command = Path(str((user.get("exec") or {}).get("command", "?"))).name
        if not creds.allow_exec:
            raise CredentialsError(cid, source,
                                   f"refused: the user runs an exec credential plugin ({command}); "
                                   f"set credentials.allow_exec: true for this cluster to allow it")
        out["exec"] = user["exec"]
        allowed.append(f"runs the exec credential plugin {command} (allowed by "
                       "credentials.allow_exec)")
    if "auth-provider" in user:
        provider = user["auth-provider"]
        if not isinstance(provider, Mapping):
            raise CredentialsError(cid, source, "malformed kubeconfig: auth-provider is not "
                                   "a mapping")
        name = str(provider.get("name") or "?")
        config = provider.get("config") or {}
        if not isinstance(config, Mapping):
            raise CredentialsError(cid, source, "malformed kubeconfig: auth-provider.config "
                                   "is not a mapping")
        action = _provider_action(name, config)
        if not creds.allow_auth_provider:
            raise CredentialsError(cid, source,
                                   f"refused: the user's auth-provider {name} {action}; set "
                                   "credentials.allow_auth_provider: true for this cluster "
                                   "to allow it")
        if name == "oidc" and not (config.get("idp-certificate-authority")
                                   or config.get("idp-certificate-authority-data")):
            raise CredentialsError(cid, source,
                                   "refused: the oidc auth-provider would refresh its token "
                                   "without TLS verification; give its "
                                   "idp-certificate-authority(-data)")
        out["auth-provider"] = provider
        allowed.append(f"auth-provider {name} {action} (allowed by "
                       "credentials.allow_auth_provider)")
    return out


def _provider_action(name: str, config: Mapping[str, Any]) -> str:
    """What an auth-provider does to get a token, in words that hold no secret."""
    command = str(config.get("cmd-path") or "").split()
    if command:
        return f"runs a program ({Path(command[0]).name})"
    if name == "oidc":
        return f"fetches tokens from {config.get('idp-issuer-url') or 'its identity provider'}"
    if name == "gcp":
        return "fetches tokens with Google application default credentials"
    return "fetches tokens"


def _normal_url(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def fingerprint(pin: str) -> str:
    """A SHA-256 fingerprint in one spelling: lower-case hex, no `sha256:` prefix, no colons."""
    text = pin.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    return "".join(ch for ch in text if ch not in ": ")


def _verified_ca(cid: str, source: str, cluster: Mapping[str, Any], pin: str,
                 fleet_file: str) -> bytes:
    """The CA certificate(s) the kubeconfig names, each checked against the pin."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem: bytes | None = None
    if cluster.get("certificate-authority-data"):
        try:
            pem = base64.b64decode("".join(str(cluster["certificate-authority-data"]).split()))
        except (binascii.Error, ValueError):
            raise CredentialsError(cid, source,
                                   "malformed kubeconfig: certificate-authority-data is not base64") from None
    elif cluster.get("certificate-authority"):
        path = Path(str(cluster["certificate-authority"])).expanduser()
        try:
            pem = path.read_bytes()
        except OSError:
            raise CredentialsError(cid, source, f"cannot read the CA file {path}") from None
    if not pem:
        raise CredentialsError(cid, source,
                               "refused: the CA is pinned but the kubeconfig names no CA certificate")
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CredentialsError(cid, source, "malformed kubeconfig: the CA is not a PEM certificate") from None
    wanted = fingerprint(pin)
    for cert in certs:
        got = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        if got != wanted:
            # Every certificate must be the pinned one: an extra CA in the bundle would let
            # another server pass TLS verification.
            raise CredentialsError(cid, source,
                                   f"refused: the kubeconfig's CA has SHA-256 {got}, but "
                                   f"{fleet_file} pins {wanted}")
    return pem
