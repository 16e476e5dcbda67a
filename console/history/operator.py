"""Who acts: the operator's name and email, decided in one place for the CLI and the TUI.

`current_operator()` is the one answer to "who is releasing": CI's build user
(`$BUILD_USER_ID`, `$GITLAB_USER_LOGIN`, `$GITHUB_ACTOR`), else the git identity
(`user.name`, `user.email`), else the login name (`$USER`, `$LOGNAME`, the password
database). Every `Operator` is cleaned when made: its name and email end up in Git
identities, in `deployment-history.log` lines and in gate decisions, so a control
character (a newline forging a log line), `<`/`>` (forging a Git identity) or a
kilobyte of text never gets through.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import git

CI_USER_VARIABLES = ("BUILD_USER_ID", "GITLAB_USER_LOGIN", "GITHUB_ACTOR")
NAME_LIMIT = 100
UNKNOWN = "unknown"
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f<>\u2028\u2029]+")
_UNSAFE_EMAIL = re.compile(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~@-]+")


def clean_name(text: str | None) -> str:
    """`text` as a safe operator name: control characters and `<>` become spaces,
    whitespace collapses, at most NAME_LIMIT characters; "unknown" when nothing is left."""
    name = " ".join(_UNSAFE_NAME.sub(" ", str(text or "")).split())[:NAME_LIMIT].strip()
    return name or UNKNOWN


def _clean_email(text: str | None, name: str) -> str:
    email = _UNSAFE_EMAIL.sub("", str(text or ""))[:NAME_LIMIT]
    if email.count("@") == 1 and not email.startswith("@") and not email.endswith("@"):
        return email
    local = _UNSAFE_EMAIL.sub("", name.replace(" ", ".")).replace("@", "") or UNKNOWN
    return f"{local}@{_UNSAFE_EMAIL.sub('', socket.gethostname()) or 'localhost'}"


@dataclass(frozen=True)
class Operator:
    """Who acts: the commit author of the records (cleaned when made)."""

    name: str
    email: str

    def __post_init__(self) -> None:
        name = clean_name(self.name)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "email", _clean_email(self.email, name))

    @classmethod
    def parse(cls, text: str, default: Operator | None = None) -> Operator:
        """`Name <email>` or a bare name; a bare name equal to `default.name` keeps its email."""
        match = re.match(r"^\s*(.*?)\s*<([^>]*)>\s*$", text or "")
        if match and match.group(1):
            return cls(match.group(1), match.group(2))
        name = (text or "").strip()
        if not name:
            return default or default_operator()
        if default is not None and clean_name(name) in (default.name, clean_name(_login_name())):
            # The person at this terminal: their git identity, not a bare login name.
            return default
        return cls(name, "")


def current_operator(environ: Mapping[str, str] | None = None,
                     repo: git.Repo | None = None) -> Operator:
    """The operator of this process, for every way a release starts (CLI, TUI, CI).

    CI's build user when one of CI_USER_VARIABLES is set, else `default_operator(repo)`.
    """
    env = os.environ if environ is None else environ
    for variable in CI_USER_VARIABLES:
        if env.get(variable, "").strip():
            return Operator(env[variable], "")
    return default_operator(repo)


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
            user = UNKNOWN
    return user


def author_of(release: Mapping[str, Any] | None, default: Operator) -> Operator:
    """The operator recorded on a release line (the commit author of its records)."""
    if not release or not release.get("operator"):
        return default
    return Operator(release["operator"], release.get("operator_email") or default.email)


__all__ = ["CI_USER_VARIABLES", "Operator", "author_of", "clean_name", "current_operator",
           "default_operator"]
