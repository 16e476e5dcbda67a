"""Validation of the names the console passes to registries and clusters.

Tags, cluster ids, namespaces and release ids end up in URLs, label values and
Kubernetes object names; they are checked here, once, against the grammar of the
system that receives them. A bad value raises `ValidationError` naming the field and
showing the value safely (its `repr`, truncated), so a stray control character or a
pasted secret never lands verbatim on a terminal.
"""

from __future__ import annotations

import re

from console.errors import ValidationError

# OCI distribution-spec tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# RFC 1123 label, as Kubernetes uses it for namespaces and most object names.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_MAX = 63
# A release id is also a Kubernetes label value (so clusters can be searched by it).
_RELEASE_ID = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_RELEASE_ID_MAX = 63

_SHOW_MAX = 40


def show(value: object, limit: int = _SHOW_MAX) -> str:
    """`repr(value)`, truncated to about `limit` characters, for error messages."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def validate_tag(tag: object, field: str = "tag") -> str:
    """Return `tag` if it is a valid OCI image tag, else raise `ValidationError`."""
    if not isinstance(tag, str) or not tag:
        raise ValidationError(f"{field}: expected an image tag, got {show(tag)}")
    if not _TAG.fullmatch(tag):
        if len(tag) > 128:
            reason = f"longer than 128 characters ({len(tag)})"
        else:
            reason = ("a tag is letters, digits, '_', '.' and '-' and must not start "
                      "with '.' or '-'")
        raise ValidationError(f"{field}: {show(tag)} is not a valid image tag: {reason}")
    return tag


def validate_dns_label(name: object, field: str = "name") -> str:
    """Return `name` if it is an RFC 1123 DNS label (Kubernetes names), else raise."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{field}: expected a name, got {show(name)}")
    if len(name) > _DNS_LABEL_MAX:
        raise ValidationError(
            f"{field}: {show(name)} is too long ({len(name)} characters, at most "
            f"{_DNS_LABEL_MAX})")
    if not _DNS_LABEL.fullmatch(name):
        raise ValidationError(
            f"{field}: {show(name)} is not a valid DNS-1123 label: lower-case letters, "
            "digits and '-', starting and ending with a letter or digit")
    return name


def validate_release_id(release_id: object, field: str = "release id") -> str:
    """Return `release_id` if it is usable as a Kubernetes label value, else raise."""
    if not isinstance(release_id, str) or not release_id:
        raise ValidationError(f"{field}: expected a release id, got {show(release_id)}")
    if len(release_id) > _RELEASE_ID_MAX or not _RELEASE_ID.fullmatch(release_id):
        raise ValidationError(
            f"{field}: {show(release_id)} is not a valid release id: at most "
            f"{_RELEASE_ID_MAX} letters, digits, '-', '_' and '.', starting and ending "
            "with a letter or digit")
    return release_id
