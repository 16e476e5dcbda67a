"""Redaction: secrets and control characters out of every text the console shows or writes.

Applied once, where text is made: `console.events.Event` scrubs its message and data
when it is created, `console.errors.UserError` its message - so the terminal lines, the
`--json` stream, the TUI, the ledger and the notifications (all fed by events) and every
one-line error get it without scrubbing again. Text made outside events (Git's and an
SMTP server's answers, a child's log) is scrubbed where those messages are made.

What goes:
- secrets: credentials in URLs (`https://user:TOKEN@host` -> `https://***@host`),
  `Authorization:` values, `Bearer`/`Basic` credentials, `token=`/`password:`-style
  pairs, PEM blocks, JWTs and long base64 blobs (kubeconfig data), and the known secret
  values: those registered with `register_secret` (a Vault token, a ledger remote's
  password) and the values of SECRET_ENV variables;
- control characters: line breaks and tabs become spaces (a message stays one line, so
  no one forges a log or terminal line), other C0/C1 characters, DEL and the Unicode
  bidirectional overrides become visible `\\xNN`/`\\uNNNN` escapes (no ANSI sequence
  reaches a terminal).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

ERROR_LIMIT = 2000  # characters of text kept per message or value
MASK = "***"
MIN_SECRET = 8     # shorter registered values are not masked (they would mask words)
# Environment variables whose values are secrets wherever they show up.
SECRET_ENV = ("VAULT_TOKEN", "BAO_TOKEN", "VAULT_SECRET_ID", "GIT_PASSWORD", "GITHUB_TOKEN",
              "GITLAB_TOKEN", "CI_JOB_TOKEN", "SLACK_WEBHOOK_URL")

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Credentials inside URLs: https://user:token@host -> https://***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+(:[^/\s@]*)?@"), r"\1***@"),
    # An HTTP Authorization (or Proxy-Authorization) header's value, whatever its scheme.
    (re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*)[\"']?"
                r"(?:[A-Za-z-]+\s+)?[^\s\"',}]+"), r"\1***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.S), "***PEM***"),
    (re.compile(r"(?i)\b([\w.-]*(?:token|password|passwd|secret|client-key-data|"
                r"client-certificate-data|certificate-authority-data|api[_-]?key)"
                r"[\"']?\s*[:=]\s*)[\"']?"
                # A value that looks like a secret, not prose ("token: expected a string"):
                # with a digit or symbol and 6+ characters, or 16+ characters.
                r"(?:(?=[^\s\"',}]*[0-9_+/=.-])[^\s\"',}]{6,}|[^\s\"',}]{16,})"), r"\1***"),
    # JWTs (ServiceAccount tokens) and long base64 blobs (kubeconfig data), not hex digests.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"), "***"),
    (re.compile(r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*[g-zG-Z+/])[A-Za-z0-9+/]{60,}={0,2}"),
     "***"),
)
# Cheap first look: text none of the patterns above could match skips them (most event
# text, such as rollout progress, at thousands of events a second on a big fleet). Each
# pattern needs one of these words (in any case) or a run of 60 base64 characters; plain
# substring tests on the lowered text cost a fifth of one case-blind regex alternation.
_MAYBE_WORDS = ("://", "authoriz", "bearer", "basic", "-----begin", "token", "passw", "secret",
                "client-", "certificate-authority", "api_key", "api-key", "apikey", "eyj")
_LONG_RUN = 60
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{%d}" % _LONG_RUN)
# For text that is not plain ASCII: `re.IGNORECASE` also matches 'ſ' for s, 'ı' and 'İ'
# for i, 'K' (Kelvin) for k - the patterns do, `str.lower()` does not.
_MAYBE_ANY_CASE = re.compile("(?i)" + "|".join(map(re.escape, _MAYBE_WORDS))
                             + r"|[A-Za-z0-9+/]{%d}" % _LONG_RUN)
_BREAKS = re.compile(r"[\r\n\t\v\f\u0085\u2028\u2029]+")
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_known: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask `value` wherever it appears in scrubbed text from now on (this process)."""
    if value and len(value) >= MIN_SECRET:
        with _known_lock:
            _known.add(value)


# The SECRET_ENV names as the environment's backing dict keys them (`os.environ._data`):
# reading it directly costs a tenth of `os.environ.get` (which encodes the name and
# decodes the value each time), and it is the live environment, so a variable set since
# is seen. Where the platform's `os.environ` has no such dict, `os.environ.get` it is.
_ENV_KEYS = tuple(os.fsencode(name) for name in SECRET_ENV) if os.name == "posix" else ()


def _environment_secrets() -> list[str]:
    data = getattr(os.environ, "_data", None)
    if _ENV_KEYS and type(data) is dict:
        found = [data.get(key) for key in _ENV_KEYS]
        return [os.fsdecode(v) for v in found if v and len(v) >= MIN_SECRET]
    environ = os.environ
    return [v for v in (environ.get(name) for name in SECRET_ENV) if v and len(v) >= MIN_SECRET]


def _known_values() -> list[str]:
    found = _environment_secrets()
    if _known:
        with _known_lock:
            found.extend(_known)
    return sorted(found, key=len, reverse=True) if len(found) > 1 else found


def _maybe_secret(text: str) -> bool:
    """Whether any of `_SECRET_PATTERNS` could match `text` (False: none can)."""
    if not text.isascii():
        return _MAYBE_ANY_CASE.search(text) is not None
    lowered = text.lower()
    for word in _MAYBE_WORDS:
        if word in lowered:
            return True
    return len(text) >= _LONG_RUN and _BASE64_RUN.search(text) is not None


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def scrub(text: str | None, limit: int = ERROR_LIMIT, known: list[str] | None = None) -> str:
    """`text` without secrets and control characters, on one line, cut to `limit`.

    `known`: the known secret values, when the caller already has them (`clean`)."""
    if not text:
        return ""
    out = str(text)
    for value in _known_values() if known is None else known:
        if value in out:
            out = out.replace(value, MASK)
    if _ANY_CONTROL.search(out):
        out = _CONTROL.sub(_escape, _BREAKS.sub(" ", out))
    if _maybe_secret(out):
        for pattern, replacement in _SECRET_PATTERNS:
            out = pattern.sub(replacement, out)
    if len(out) > limit:
        out = out[: limit - 3] + "..."
    return out


def clean(value: Any, limit: int = ERROR_LIMIT, known: list[str] | None = None) -> Any:
    """`value` with every string in it scrubbed (dicts, lists and tuples walked)."""
    kind = type(value)
    # The exact types an event's data holds are tested first: `isinstance` against the
    # `Mapping` ABC is slow, and a thousand-cluster release makes tens of thousands of events.
    if kind in _UNCHANGED:
        return value
    if kind is str or isinstance(value, str):
        return scrub(value, limit, known) if value else value
    if kind is dict or isinstance(value, Mapping):
        known = _known_values() if known is None else known
        return {key: clean(item, limit, known) for key, item in value.items()}
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        known = _known_values() if known is None else known
        return kind(clean(item, limit, known) for item in value)
    return value


_UNCHANGED = frozenset({int, float, bool, type(None)})
__all__ = ["ERROR_LIMIT", "SECRET_ENV", "clean", "register_secret", "scrub"]


class ScrubbingFormatter(logging.Formatter):
    """Log records as one scrubbed line: `release-console: warning: MESSAGE`.

    Python's fallback handler would print `log.exception`'s traceback raw (secrets, many
    lines) to stderr; with this formatter an exception adds only its type and message, and
    a traceback (`traceback=True`, for the private engine log) is kept, scrubbed, on the
    same line."""

    def __init__(self, traceback: bool = False) -> None:
        super().__init__()
        self.traceback = traceback

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            message += (" | " + self.formatException(record.exc_info) if self.traceback
                        else f": {type(exc).__name__}: {exc}")
        return f"release-console: {record.levelname.lower()}: {scrub(message)}"


class _StderrHandler(logging.Handler):
    """Writes to the `sys.stderr` of the moment (a StreamHandler keeps the one it was made
    with, which tests and redirections replace)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break the console
            self.handleError(record)


def log_to_stderr(traceback: bool = False) -> None:
    """The console's warnings go to stderr through `ScrubbingFormatter` (once per process)."""
    logger = logging.getLogger("console")
    if any(isinstance(h.formatter, ScrubbingFormatter) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(ScrubbingFormatter(traceback))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
