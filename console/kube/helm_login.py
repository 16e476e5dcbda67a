"""The login helm uses for an `oci://` chart's registry (`app.chart_registry`).

The username and password come from where the fleet file says - two environment variables
(`username_env`, `password_env`) or a KV v2 secret in Vault/OpenBao (`vault`, fields
`username` and `password`, read with the fleet's `vault` settings as cluster credentials
are) - and are read only when a helm call needs the chart (a rollback or `status` never
does). They reach helm as a registry config file (`--registry-config` format, Docker's
`config.json`) written 0600 into that call's private HOME and removed with it: never on a
command line, in helm's environment, a log or the ledger.

A registry that refuses them is named with the fleet file field they came from, so the
operator knows which variable or secret to fix.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

from console.config import ChartRegistryConfig, VaultConfig
from console.errors import UserError

# What helm (oras) prints when the registry refuses or wants credentials.
_REFUSED = ("401 unauthorized", "unauthorized:", "authentication required",
            "basic credential not found", "403 forbidden")


class ChartLogin:
    """The registry login of one fleet's oci:// chart; read once, on first use."""

    def __init__(self, host: str, registry: ChartRegistryConfig, vault: VaultConfig | None,
                 fleet: str) -> None:
        self.host = host
        self.registry = registry
        self.vault = vault
        self.fleet = fleet
        self._lock = threading.Lock()
        self._found: tuple[str, str] | None = None

    def __repr__(self) -> str:  # never the credentials
        return f"ChartLogin({self.host!r}, from {self.source()})"

    def source(self) -> str:
        """The fleet file field the login comes from, e.g. `app.chart_registry.vault
        (secret/charts)` - what to fix when the registry refuses it."""
        if self.registry.vault:
            return f"app.chart_registry.vault ({self.registry.vault})"
        return (f"app.chart_registry.username_env/password_env (${self.registry.username_env}"
                f", ${self.registry.password_env})")

    def credentials(self) -> tuple[str, str]:
        """(username, password); `UserError` naming the fleet file and field when they
        cannot be read (the values are never in a message)."""
        with self._lock:
            if self._found is None:
                self._found = self._read()
            return self._found

    def _read(self) -> tuple[str, str]:
        reg = self.registry
        if reg.vault:
            from console.credentials.vault import read_vault_registry_credentials
            try:
                return read_vault_registry_credentials(reg.vault, self.vault)
            except UserError as exc:
                raise UserError(f"{self.fleet}: app.chart_registry.vault: chart {exc}") \
                    from None
        user = os.environ.get(reg.username_env or "")
        password = os.environ.get(reg.password_env or "")
        for name, field, value in ((reg.username_env, "username_env", user),
                                   (reg.password_env, "password_env", password)):
            if not value:
                raise UserError(f"{self.fleet}: app.chart_registry.{field}: the environment "
                                f"variable ${name} is not set or empty")
        return str(user), str(password)

    def write_config(self, home: Path) -> Path:
        """The registry config file (0600) in a helm call's private `home`; its path."""
        user, password = self.credentials()
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        folder = home / "config" / "registry"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / "config.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"auths": {self.host: {"auth": auth}}}, handle)
        return path

    def refused(self, stderr: str) -> str | None:
        """A message naming the fleet file field when helm's `stderr` says the registry
        refused the login; None for any other failure."""
        if not wants_login(stderr):
            return None
        return (f"the chart registry {self.host} refused the login from {self.source()} "
                f"in {self.fleet}: check the username and password there")


def wants_login(stderr: str) -> bool:
    """Whether helm's `stderr` says the registry refused, or asked for, a login."""
    text = stderr.lower()
    return any(mark in text for mark in _REFUSED)
