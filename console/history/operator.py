"""Who acts in the ledger: the operator's name and email (the commit author of records)."""

from __future__ import annotations

import getpass
import os
import re
import socket
from dataclasses import dataclass
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import git

@dataclass(frozen=True)
class Operator:
    """Who acts: the commit author of the records."""

    name: str
    email: str

    @classmethod
    def parse(cls, text: str, default: Operator | None = None) -> Operator:
        """`Name <email>` or a bare name; a bare name equal to `default.name` keeps its email."""
        match = re.match(r"^\s*(.*?)\s*<([^>]*)>\s*$", text or "")
        if match and match.group(1):
            return cls(match.group(1), match.group(2))
        name = (text or "").strip()
        if not name:
            return default or default_operator()
        if default is not None and name in (default.name, _login_name()):
            # The person at this terminal: their git identity, not a bare login name.
            return default
        return cls(name, f"{name}@{socket.gethostname()}")


def default_operator(repo: git.Repo | None = None) -> Operator:
    """The operator from git config (`user.name`, `user.email`), else `$USER@host`."""
    name = email = ""
    try:
        import git as gitmodule

        reader = (repo.config_reader() if repo is not None
                  else gitmodule.GitConfigParser(None, read_only=True))
        with reader:
            name = str(reader.get_value("user", "name", "") or "")
            email = str(reader.get_value("user", "email", "") or "")
    except Exception:  # noqa: BLE001 - an unreadable git config just means "use $USER"
        pass
    user = _login_name()
    return Operator(name or user, email or f"{user}@{socket.gethostname()}")


def _login_name() -> str:
    """$USER, else $LOGNAME, else the password database's name, else "unknown"."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    return user



def author_of(release: Mapping[str, Any] | None, default: Operator) -> Operator:
    """The operator recorded on a release line (the commit author of its records)."""
    if not release or not release.get("operator"):
        return default
    return Operator(release["operator"], release.get("operator_email") or default.email)


__all__ = ["Operator", "author_of", "default_operator"]
