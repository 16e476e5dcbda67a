"""Where a cluster's kubeconfig comes from, and `resolve`, which reads and checks it.

A cluster's `credentials:` block in `clusters.yaml` names one source:

- `kubeconfig: PATH` (+ `context:`): a kubeconfig file;
- `env: NAME`: an environment variable holding a kubeconfig, as YAML text or base64
  (what CI systems hand over as a masked variable), or the path of a kubeconfig file;
- `vault: PATH`: a KV v2 secret in HashiCorp Vault or OpenBao whose field `kubeconfig`
  holds the kubeconfig (`console.credentials.vault`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from console.config import Cluster, FleetConfig
from console.credentials.errors import CredentialsError
from console.credentials.kubeconfig import enforce, parse_kubeconfig, select_context
from console.credentials.vault import read_vault_kubeconfig

# A kubeconfig is a few KiB; anything far larger is a wrong path, not credentials.
MAX_KUBECONFIG_BYTES = 1024 * 1024
# cluster id -> what its credentials were allowed to do beyond the plain rules, as of the
# last `resolve` in this process (for `check` to name).
_allowances: dict[str, tuple[str, ...]] = {}
_allowances_lock = threading.Lock()


def resolve(cluster: Cluster, config: FleetConfig) -> dict:
    """The kubeconfig for `cluster`, in memory, with only its context, checked against the
    pins and opt-ins (`console.credentials.kubeconfig.enforce`).

    `cluster` is a `console.config.Cluster` (its `credentials` name the source and the
    pins), `config` the `FleetConfig` (its `vault` block, if any). Raises
    `CredentialsError`.
    """
    creds = cluster.credentials
    cid = cluster.id
    fleet = str(getattr(config, "source", "") or getattr(config, "path", "") or "the fleet file")
    with _allowances_lock:
        _allowances.pop(cid, None)
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
        raise CredentialsError(cid, fleet, "no kubeconfig, env or vault source is set")
    kubeconfig = parse_kubeconfig(cid, source, text)
    selected = select_context(cid, source, kubeconfig, creds.context, base_dir)
    checked, allowed = enforce(cid, source, selected, creds, fleet)
    with _allowances_lock:
        _allowances[cid] = allowed
    return checked


def allowances_in_use() -> dict[str, tuple[str, ...]]:
    """cluster id -> what its credentials may do beyond token, certificate or basic auth
    and verified TLS (a program run, a token fetched, TLS verification off), each named
    with the fleet file's opt-in; clusters resolved in this process with none are absent."""
    with _allowances_lock:
        return {cid: notes for cid, notes in _allowances.items() if notes}


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

