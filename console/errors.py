"""Errors a user can act on.

Anything raised as a `UserError` is printed as one line (no traceback) and the command
exits with `exit_code` (2: bad input or a failed pre-flight, nothing touched). The
message names the file, line, field or cluster; it never contains a secret (nor a
control character: `console.redact` scrubs it when the error is made).
"""

from __future__ import annotations

from console.redact import scrub


class UserError(Exception):
    """Bad input or a refused action: printed without a traceback."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        # Made clean once (no secret, no control character): printed as it is.
        super().__init__(*(scrub(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigError(UserError):
    """`clusters.yaml` is wrong: the message starts with `file:line: field: ...`."""


class ValidationError(UserError):
    """A tag, name, selector or flag value is not acceptable."""
