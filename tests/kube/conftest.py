"""Fixtures of the kube tests: no developer's VAULT_* variables or home directory leak in
(the private-files tests run the console, which reads credentials)."""

from __future__ import annotations

from tests.credentials.conftest import clean_vault_env  # noqa: F401 - autouse fixture
