"""The release-wide checks: the tag, the plan, and the image in its registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from console.errors import UserError
from console.preflight.model import CheckResult

if TYPE_CHECKING:
    from console.registry import ImageCheck


def check_tag(config: Any, tag: str, plan: Any) -> CheckResult:
    """The image tag follows the OCI tag grammar."""
    from console.names import validate_tag
    try:
        validate_tag(tag)
    except UserError as exc:
        return CheckResult("tag", False, str(exc))
    return CheckResult("tag", True, config.app.image_ref(tag))


def check_plan(config: Any, tag: str, plan: Any) -> CheckResult:
    """The plan was built (selection, order and strategy are sound) and has targets."""
    if isinstance(plan, Exception):
        return CheckResult("plan", False, str(plan))
    if not plan.targets and plan.shard:
        # A slice with no cluster still meets the other shards at every wave.
        return CheckResult("plan", True, f"shard {plan.shard[0]}/{plan.shard[1]}: no "
                           f"cluster of the release hashes to it")
    if not plan.targets:
        return CheckResult("plan", False, "no target clusters")
    return CheckResult("plan", True, f"{plan.strategy}: {len(plan.targets)} cluster(s) in "
                       f"{len(plan.waves)} wave(s)")


def lookup_image(config: Any, tag: str) -> ImageCheck:
    """One `HEAD` for `app.image:tag` in its registry, with the fleet file's credentials
    (its digest, when the tag exists: what a pinned release runs)."""
    from console.credentials import read_vault_registry_credentials
    from console.registry import ImageCheck, image_exists

    credentials = None
    if config.app.registry.vault:
        try:
            credentials = read_vault_registry_credentials(config.app.registry.vault,
                                                          config.vault)
        except UserError as exc:
            return ImageCheck(False, str(exc))
    return image_exists(config.app.image, tag, config.app.registry, credentials=credentials)


def check_image(config: Any, tag: str) -> CheckResult:
    """The release's image (`app.image:tag`) exists in its registry."""
    result = lookup_image(config, tag)
    return CheckResult("image", result.ok, result.detail)


def image_check(config: Any, tag: str, plan: Any) -> CheckResult:
    """`check_image` as a release check."""
    return check_image(config, tag)
