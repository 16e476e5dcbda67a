"""Kubeconfigs and registry credentials from HashiCorp Vault or OpenBao (KV v2).

The client honours `VAULT_ADDR`, `VAULT_NAMESPACE` and `VAULT_CACERT`, which override the
fleet file's `vault:` block as they do for Vault Agent; it logs in with `VAULT_TOKEN` (or
the Vault CLI's `~/.vault-token`) or by AppRole (role and secret id read from the
environment variables the fleet file names). TLS verification of Vault is never turned
off: `VAULT_SKIP_VERIFY` set to a true value is refused (docs/config.md says why).
Errors name the path and the kind of failure, never a token or a secret's content.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from console.config import VaultConfig
from console.credentials.errors import CredentialsError
from console.errors import UserError

# The KV v2 field that holds the kubeconfig (YAML text or base64).
VAULT_FIELD = "kubeconfig"
# Seconds for each request to Vault (hvac passes it to every HTTP call).
VAULT_TIMEOUT = 10.0
# AppRole logins are cached per process: a secret id may allow only a few uses, and a
# login per cluster would leave a Vault token per cluster behind. Key: a hash of
# address, namespace, mount, role id and secret id; value: (token, renew-after time).
_approle_tokens: dict[str, tuple[str, float]] = {}
_approle_lock = threading.Lock()


def _setting(env: str, configured: object) -> str | None:
    """An environment variable, else the fleet file's `vault:` field, else None."""
    value = os.environ.get(env) or configured
    return str(value) if value else None


# VAULT_SKIP_VERIFY values that leave verification on (Go's strconv.ParseBool false).
_FALSE = ("", "0", "f", "false")


def skip_verify_problem() -> str | None:
    """Why a set `VAULT_SKIP_VERIFY` is refused, or None when it is unset or false.

    Refused rather than honoured with a warning: an environment variable left in a CI
    job template would turn verification off for every release, unseen in a log nobody
    reads; what a release trusts is the fleet file's to say (`vault.cacert`).
    """
    value = os.environ.get("VAULT_SKIP_VERIFY", "").strip()
    if value.lower() in _FALSE:
        return None
    return ("refused: VAULT_SKIP_VERIFY is set, and the console does not turn off TLS "
            "verification of Vault; unset it and give Vault's CA with VAULT_CACERT or "
            "the fleet file's vault.cacert")


def vault_client(vault: VaultConfig) -> Any:
    """An `hvac.Client` for the fleet's `vault:` block and the usual VAULT_* variables, not
    logged in. It always verifies TLS (`VAULT_CACERT`, `vault.cacert`, else the system CAs);
    `UserError` when `VAULT_SKIP_VERIFY` asks otherwise."""
    import hvac

    problem = skip_verify_problem()
    if problem:
        raise UserError(f"Vault: {problem}")
    addr = _setting("VAULT_ADDR", vault.addr) or "https://127.0.0.1:8200"
    cacert = _setting("VAULT_CACERT", vault.cacert)
    return hvac.Client(url=addr, verify=cacert or True, timeout=vault.timeout or VAULT_TIMEOUT,
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
    problem = skip_verify_problem()
    if problem:
        raise CredentialsError(cid, f"vault {path}", problem)
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

