"""Per-cluster credentials: find a cluster's kubeconfig, cut it down, check it, keep it in memory.

A cluster's `credentials:` block in `clusters.yaml` names one source:

- `kubeconfig: PATH` (+ `context:`): a kubeconfig file;
- `env: NAME`: an environment variable holding a kubeconfig, as YAML text or base64
  (what CI systems hand over as a masked variable), or the path of a kubeconfig file;
- `vault: PATH`: a KV v2 secret in HashiCorp Vault or OpenBao (e.g.
  `secret/kubeconfigs/prod-eu`), whose field `kubeconfig` holds the kubeconfig. The
  client honours `VAULT_ADDR`, `VAULT_NAMESPACE`, `VAULT_CACERT` (and
  `VAULT_SKIP_VERIFY`), which override the fleet file's `vault:` block as they do for
  Vault Agent; it logs in with `VAULT_TOKEN` or by AppRole (role and secret id read from
  the environment variables the fleet file names).

`resolve` returns a new kubeconfig dict holding only the selected context, its cluster
and its user, so one cluster's credentials can never reach another's client and nothing
is merged into `~/.kube/config`. Before returning it enforces the cluster's pins: the API
server URL, the CA certificate's SHA-256 fingerprint, and no `exec` credential plugin
unless `allow_exec` is set.

Every failure is a `CredentialsError` naming the cluster and where the credentials come
from (file path, variable name, Vault path) - never any of their content: YAML errors are
reported by line and column only, and Vault errors by kind.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from console.config import Cluster, FleetConfig, VaultConfig
from console.errors import UserError

DEFAULT_VAULT_PATH = "secret/kubeconfigs/{cluster}"
# The KV v2 field that holds the kubeconfig (YAML text or base64).
VAULT_FIELD = "kubeconfig"
# A kubeconfig is a few KiB; anything far larger is a wrong path, not credentials.
MAX_KUBECONFIG_BYTES = 1024 * 1024
# Seconds for each request to Vault (hvac passes it to every HTTP call).
VAULT_TIMEOUT = 10.0
# AppRole logins are cached per process: a secret id may allow only a few uses, and a
# login per cluster would leave a Vault token per cluster behind. Key: a hash of
# address, namespace, mount, role id and secret id; value: (token, renew-after time).
_approle_tokens: dict[str, tuple[str, float]] = {}
_approle_lock = threading.Lock()
_private_dir: Path | None = None
_private_dir_lock = threading.Lock()
# Kubeconfig fields that name files; relative paths are relative to the kubeconfig file.
_CLUSTER_FILE_FIELDS = ("certificate-authority",)
_USER_FILE_FIELDS = ("client-certificate", "client-key", "tokenFile")


class CredentialsError(UserError):
    """A cluster's credentials could not be had or were refused.

    The message names the cluster and the source (file path, variable name, Vault path);
    it never holds a token, a key or any part of a kubeconfig.
    """

    def __init__(self, cluster: str, source: str, problem: str) -> None:
        super().__init__(f"cluster {cluster!r}: credentials from {source}: {problem}")
        self.cluster = cluster
        self.source = source
        self.problem = problem


def resolve(cluster: Cluster, config: FleetConfig) -> dict:
    """The kubeconfig for `cluster`, in memory, with only its context, checked against the pins.

    `cluster` is a `console.config.Cluster` (its `credentials` name the source and the
    pins), `config` the `FleetConfig` (its `vault` block, if any). Raises
    `CredentialsError`.
    """
    creds = cluster.credentials
    cid = cluster.id
    if creds.vault:
        path = creds.vault.replace("{cluster}", cid)
        source = f"vault {path}"
        text = read_vault_kubeconfig(cid, path, config.vault)
        base_dir = None
    elif creds.env:
        source = f"environment variable ${creds.env}"
        text = os.environ.get(creds.env)
        if text is None or not text.strip():
            raise CredentialsError(cid, source, "the variable is not set or empty")
        base_dir = None
        if _names_a_file(text):
            # The variable names a kubeconfig file (as $KUBECONFIG does) rather than holding one.
            path = Path(text.strip()).expanduser()
            source = f"kubeconfig {path} (from ${creds.env})"
            text = _read_file(cid, source, path)
            base_dir = path.parent
    elif creds.kubeconfig:
        path = Path(creds.kubeconfig).expanduser()
        source = f"kubeconfig {path}"
        text = _read_file(cid, source, path)
        base_dir = path.parent
    else:
        raise CredentialsError(cid, "clusters.yaml", "no kubeconfig, env or vault source is set")
    kubeconfig = parse_kubeconfig(cid, source, text)
    selected = select_context(cid, source, kubeconfig, creds.context, base_dir)
    check_pins(cid, source, selected, server=creds.server, ca_sha256=creds.ca_sha256,
               allow_exec=creds.allow_exec)
    return selected


def new_api_client(kubeconfig: Mapping[str, Any]) -> Any:
    """A `kubernetes.client.ApiClient` of its own for one resolved kubeconfig.

    The default client configuration is left alone (`persist_config=False`). The client
    library needs files for CA, client certificate and key data: they go to 0600 files in
    `private_dir()`, removed at exit.
    """
    from kubernetes import config as kube_config

    return kube_config.new_client_from_config_dict(
        config_dict=dict(kubeconfig), context=kubeconfig.get("current-context"),
        persist_config=False, temp_file_path=str(private_dir()))


def private_dir() -> Path:
    """This process's 0700 temporary directory for credential files, removed at exit."""
    global _private_dir
    with _private_dir_lock:
        if _private_dir is None or not _private_dir.is_dir():
            _private_dir = Path(tempfile.mkdtemp(prefix="release-console-"))
            atexit.register(shutil.rmtree, _private_dir, ignore_errors=True)
        return _private_dir


def _names_a_file(text: str) -> bool:
    """Whether an environment variable's value is the path of an existing file."""
    value = text.strip()
    if "\n" in value or len(value) > 4096:
        return False
    try:
        return Path(value).expanduser().is_file()
    except (OSError, ValueError):  # not a possible path (too long a name, a NUL byte)
        return False


def _read_file(cid: str, source: str, path: Path) -> str:
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            # A FIFO or a device would block or never end.
            raise CredentialsError(cid, source, "not a regular file")
        with path.open("rb") as handle:
            data = handle.read(MAX_KUBECONFIG_BYTES + 1)
        if len(data) > MAX_KUBECONFIG_BYTES:
            raise CredentialsError(cid, source, f"larger than {MAX_KUBECONFIG_BYTES // 1024} KiB: "
                                   "not a kubeconfig")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise CredentialsError(cid, source, "file not found") from None
    except IsADirectoryError:
        raise CredentialsError(cid, source, "is a directory, not a file") from None
    except PermissionError:
        raise CredentialsError(cid, source, "permission denied reading the file") from None
    except UnicodeDecodeError:
        raise CredentialsError(cid, source, "not a text file (not UTF-8)") from None
    except OSError as exc:
        raise CredentialsError(cid, source, f"cannot read the file ({exc.strerror})") from None


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
        data = yaml.safe_load(text)
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


def check_pins(cid: str, source: str, kubeconfig: Mapping[str, Any], *, server: str | None,
               ca_sha256: str | None, allow_exec: bool) -> None:
    """Refuse a selected kubeconfig that breaks the cluster's pins (see the module doc)."""
    cluster = kubeconfig["clusters"][0]["cluster"]
    user = kubeconfig["users"][0]["user"]
    actual = str(cluster.get("server", ""))
    if server and _normal_url(actual) != _normal_url(server):
        raise CredentialsError(cid, source,
                               f"refused: the kubeconfig points at {actual}, but clusters.yaml "
                               f"pins the API server {server}")
    if ca_sha256:
        _check_ca_pin(cid, source, cluster, ca_sha256)
    if user.get("exec") and not allow_exec:
        command = Path(str((user.get("exec") or {}).get("command", "?"))).name
        raise CredentialsError(cid, source,
                               f"refused: the user runs an exec credential plugin ({command}); "
                               f"set credentials.allow_exec: true for this cluster to allow it")


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


def _check_ca_pin(cid: str, source: str, cluster: Mapping[str, Any], pin: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if cluster.get("insecure-skip-tls-verify"):
        raise CredentialsError(cid, source,
                               "refused: the CA is pinned but the kubeconfig skips TLS verification")
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
                                   f"clusters.yaml pins {wanted}")


# --- Vault / OpenBao -------------------------------------------------------------------


def _setting(env: str, configured: object) -> str | None:
    """An environment variable, else the fleet file's `vault:` field, else None."""
    value = os.environ.get(env) or configured
    return str(value) if value else None


def vault_client(vault: VaultConfig) -> Any:
    """An `hvac.Client` for the fleet's `vault:` block and the usual VAULT_* variables, not logged in."""
    import hvac

    addr = _setting("VAULT_ADDR", vault.addr) or "https://127.0.0.1:8200"
    cacert = _setting("VAULT_CACERT", vault.cacert)
    skip = os.environ.get("VAULT_SKIP_VERIFY", "").lower() in ("1", "true", "yes")
    verify: bool | str = False if skip else (cacert or True)
    return hvac.Client(url=addr, verify=verify, timeout=vault.timeout or VAULT_TIMEOUT,
                       namespace=_setting("VAULT_NAMESPACE", vault.namespace))


def _split_mount(path: str) -> tuple[str, str]:
    """`secret/kubeconfigs/x` -> (`secret`, `kubeconfigs/x`), as `vault kv get` reads a path."""
    head, _, rest = path.strip("/").partition("/")
    return head, rest


def read_vault_kubeconfig(cid: str, path: str, vault: VaultConfig | None = None) -> str:
    """The kubeconfig text stored at KV v2 `path` (mount first); logs in as configured."""
    data, source = read_vault_secret(cid, path, vault)
    text = data.get(VAULT_FIELD)
    if not isinstance(text, str) or not text.strip():
        fields = ", ".join(sorted(data)) or "none"
        raise CredentialsError(cid, source,
                               f"the secret has no {VAULT_FIELD!r} field (fields: {fields})")
    return text


def read_vault_registry_credentials(path: str, vault: VaultConfig | None = None
                                    ) -> tuple[str, str]:
    """(username, password) of the image registry, stored at KV v2 `path` in the fields
    `username` and `password`. Raises `UserError` naming the path, never the values."""
    try:
        data, source = read_vault_secret("registry", path, vault)
    except CredentialsError as exc:
        raise UserError(f"registry credentials from {exc.source}: {exc.problem}") from None
    user, password = data.get("username"), data.get("password")
    if not (isinstance(user, str) and user and isinstance(password, str) and password):
        fields = ", ".join(sorted(data)) or "none"
        raise UserError(f"registry credentials from {source}: the secret needs 'username' "
                        f"and 'password' fields (fields: {fields})")
    return user, password


def read_vault_secret(owner: str, path: str, vault: VaultConfig | None = None
                      ) -> tuple[dict, str]:
    """The fields of the KV v2 secret at `path` (mount first) and a printable name of
    where they came from; logs in as configured. Errors name `owner` and the path."""
    vault = vault or VaultConfig()
    cid = owner
    client = vault_client(vault)
    source = f"vault {path} at {client.url}"
    mount, secret_path = _split_mount(path)
    if not secret_path:
        raise CredentialsError(cid, source, "the path needs a mount and a secret path")
    import hvac.exceptions as vault_errors

    def read() -> Any:
        return client.secrets.kv.v2.read_secret_version(
            path=secret_path, mount_point=mount, raise_on_deleted_version=True)

    stage = "login"
    try:
        cached = _login(cid, source, client, vault)
        stage = "read"
        try:
            answer = read()
        except vault_errors.Forbidden:
            if cached is None:
                raise
            # The cached AppRole token expired or was revoked: log in once more.
            stage = "login"
            _login(cid, source, client, vault, fresh=True)
            stage = "read"
            answer = read()
    except CredentialsError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated below, or re-raised
        problem = _vault_problem(exc, stage, vault)
        if problem is None:
            raise
        raise CredentialsError(cid, source, problem) from None
    data = ((answer or {}).get("data") or {}).get("data") or {}
    return (data if isinstance(data, dict) else {}), source


def _vault_problem(exc: Exception, stage: str, vault: VaultConfig) -> str | None:
    """What went wrong, in words that hold no secret (hvac's messages are not used)."""
    import hvac.exceptions as vault_errors
    import requests

    if isinstance(exc, vault_errors.VaultDown):
        return "Vault is sealed or unavailable (503)"
    if isinstance(exc, requests.exceptions.Timeout):
        return "Vault did not answer in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification of Vault failed (check VAULT_CACERT)"
    if isinstance(exc, requests.exceptions.RequestException):
        return "Vault is unreachable"
    if stage == "login" and isinstance(exc, vault_errors.VaultError):
        return (f"AppRole login refused ({type(exc).__name__}): check the role id in "
                f"${vault.role_id_env} and the secret id in ${vault.secret_id_env}")
    if isinstance(exc, vault_errors.Forbidden):
        return "permission denied (403): the token's policies do not allow reading this path"
    if isinstance(exc, vault_errors.InvalidPath):
        return "no secret at this path (404)"
    if isinstance(exc, vault_errors.Unauthorized):
        return "the Vault token was refused (401)"
    if isinstance(exc, vault_errors.VaultError):
        return f"Vault answered an error ({type(exc).__name__})"
    return None


def _login(cid: str, source: str, client: Any, vault: VaultConfig,
           fresh: bool = False) -> str | None:
    """Log `client` in: AppRole when the fleet file says so, else `VAULT_TOKEN`.

    Returns the AppRole cache key when the token came from the cache (so a refusal can
    drop it and log in again), else None.
    """
    auth = vault.auth.lower()
    if auth == "approle":
        role_env, secret_env = vault.role_id_env, vault.secret_id_env
        role_id, secret_id = os.environ.get(role_env), os.environ.get(secret_env)
        missing = [name for name, value in ((role_env, role_id), (secret_env, secret_id))
                   if not value]
        if missing:
            raise CredentialsError(cid, source,
                                   f"AppRole login needs ${' and $'.join(missing)} set")
        mount = vault.approle_mount
        namespace = _setting("VAULT_NAMESPACE", vault.namespace) or ""
        key = hashlib.sha256("\0".join((client.url, namespace, mount, str(role_id),
                                         str(secret_id))).encode()).hexdigest()
        with _approle_lock:
            if fresh:
                _approle_tokens.pop(key, None)
            cached = _approle_tokens.get(key)
            if cached and cached[1] > time.monotonic():
                client.token = cached[0]
                return key
            answer = client.auth.approle.login(role_id=role_id, secret_id=secret_id,
                                               mount_point=mount)
            lease = float(((answer or {}).get("auth") or {}).get("lease_duration") or 0)
            # Renew well before the lease ends; a token without a lease is kept 5 minutes.
            _approle_tokens[key] = (client.token, time.monotonic() + (lease * 0.8 or 300.0))
        return None
    if auth != "token":
        raise CredentialsError(cid, source, f"unknown vault auth method {auth!r} (token, approle)")
    token_env = vault.token_env
    token = os.environ.get(token_env)
    if not token:
        # Where `vault login` leaves the token, as the Vault CLI's default token helper does.
        token_file = Path("~/.vault-token").expanduser()
        token = token_file.read_text().strip() if token_file.is_file() else None
    if not token:
        raise CredentialsError(cid, source, f"no Vault token: set ${token_env}")
    client.token = token
    return None
