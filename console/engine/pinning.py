"""The same bits in every wave: a release's tag resolved to its digest once, at plan time.

A tag is a name that can be moved (re-pushed) at any moment; a digest is the image
itself. Resolving the tag when the release is planned and giving every cluster
`REPOSITORY:TAG@sha256:...` means a tag re-pushed mid-release changes nothing for later
waves: every wave runs the bits the first one was judged on. The lookup is the `HEAD`
pre-flight's image check makes (`console.preflight.release.lookup_image`, the registry's
`Docker-Content-Digest`). A registry that cannot answer it fails the `pin` check
(nothing is touched); `--no-pin` (`ReleaseRequest.pin = False`) releases the plain tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from console.preflight import CheckResult, PreflightReport

# The digests a registry may name a manifest by (OCI image spec's registered algorithms).
DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


@dataclass(frozen=True)
class Pin:
    """The digest a release runs (None: not pinned) and the `pin` check's result
    (None when pinning was turned off)."""

    digest: str | None
    check: CheckResult | None


def with_pin(report: PreflightReport, pin: Pin) -> PreflightReport:
    """`report` with the `pin` check first - unless it failed for the reason the failed
    `image` check already gives (the same lookup: a missing tag is said once)."""
    check = pin.check
    if check is None:
        return report
    if not check.ok and any(r.check == "image" and not r.ok for r in report.results):
        return report
    return PreflightReport((check, *report.results), report.live)


def resolve(config: Any, tag: str, pin: bool = True) -> Pin:
    """Resolve `app.image:tag` to its digest (one registry `HEAD`); never raises."""
    if not pin:
        return Pin(None, None)
    from console.preflight.release import lookup_image
    shown = config.app.image_ref(tag)
    try:
        found = lookup_image(config, tag)
    except Exception as exc:  # noqa: BLE001 - a lookup that breaks is a failed check
        return Pin(None, CheckResult("pin", False, f"{shown}: digest lookup failed: "
                                     f"{type(exc).__name__}: {exc}; --no-pin releases the "
                                     "tag unpinned"))
    if found.ok and found.digest and DIGEST.fullmatch(found.digest):
        return Pin(found.digest, CheckResult("pin", True, f"{shown} pinned to {found.digest}"))
    why = found.detail if not found.ok else \
        f"{shown}: the registry sent no usable Docker-Content-Digest ({found.digest!r})"
    return Pin(None, CheckResult("pin", False, f"cannot pin the tag to a digest: {why}; "
                                 "--no-pin releases the tag unpinned"))
