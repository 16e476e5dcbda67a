"""Secret scrubbing: the one place that masks tokens, passwords and credentials in text.

Every error text that goes into the ledger, a commit, a notification or a warning
passes through `scrub`.
"""

from __future__ import annotations

import re

ERROR_LIMIT = 2000  # characters of error text kept per record

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Credentials inside URLs: https://user:token@host -> https://***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+(:[^/\s@]*)?@"), r"\1***@"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.S), "***PEM***"),
    (re.compile(r"(?i)\b([\w.-]*(?:token|password|passwd|secret|client-key-data|"
                r"client-certificate-data|certificate-authority-data|api[_-]?key)"
                r"[\"']?\s*[:=]\s*)[\"']?[^\s\"',}]+"), r"\1***"),
    # JWTs (ServiceAccount tokens) and long base64 blobs (kubeconfig data), not hex digests.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"), "***"),
    (re.compile(r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*[g-zG-Z+/])[A-Za-z0-9+/]{60,}={0,2}"),
     "***"),
)


def scrub(text: str | None, limit: int = ERROR_LIMIT) -> str:
    """`text` with tokens, passwords, URL credentials, PEM and base64 blobs masked.

    Used on every error text that goes into the ledger, a commit, a notification or a
    warning; the result is cut to `limit` characters.
    """
    if not text:
        return ""
    out = str(text)
    for pattern, replacement in _SECRET_PATTERNS:
        out = pattern.sub(replacement, out)
    if len(out) > limit:
        out = out[: limit - 3] + "..."
    return out


__all__ = ["ERROR_LIMIT", "scrub"]
