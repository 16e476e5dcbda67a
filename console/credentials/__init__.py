"""Per-cluster credentials: find a cluster's kubeconfig, cut it down, check it, keep it in memory.

`resolve(cluster, config)` returns a new kubeconfig dict holding only the selected
context, its cluster and its user, so one cluster's credentials can never reach another's
client and nothing is merged into `~/.kube/config`. It enforces the cluster's pins (API
server URL, CA fingerprint - the client then gets exactly the verified CA bytes) and
refuses what the fleet file did not allow: a credential that runs a program or fetches a
token (`exec`, `auth-provider`), or a kubeconfig that turns TLS verification off.

- `sources` - the kubeconfig file, environment variable or Vault path; `resolve`.
- `kubeconfig` - parsing, context selection, and the rules (`enforce`).
- `vault` - Vault/OpenBao reads and logins (also the registry's credentials).

Every failure is a `CredentialsError` naming the cluster and where the credentials come
from (file path, variable name, Vault path) - never any of their content: YAML errors are
reported by line and column only, and Vault errors by kind.
"""

from __future__ import annotations

from console.credentials.errors import CredentialsError
from console.credentials.kubeconfig import (enforce, fingerprint, parse_kubeconfig,
                                            select_context)
from console.credentials.sources import MAX_KUBECONFIG_BYTES, allowances_in_use, resolve
from console.credentials.vault import (VAULT_FIELD, read_vault_kubeconfig,
                                       read_vault_registry_credentials, read_vault_secret,
                                       skip_verify_problem, vault_client)

__all__ = ["MAX_KUBECONFIG_BYTES", "VAULT_FIELD", "CredentialsError", "allowances_in_use",
           "enforce", "fingerprint", "parse_kubeconfig", "read_vault_kubeconfig",
           "read_vault_registry_credentials", "read_vault_secret", "resolve", "select_context",
           "skip_verify_problem", "vault_client"]
