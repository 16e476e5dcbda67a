"""What the console reads of a Deployment: its live state (`LiveDeployment`), the
revisions of its rollout history, a rollout's progress, and the tag and digest of an
image reference. Plain records and pure functions; `console.kube.driver` fills them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def image_tag(image: str | None) -> str | None:
    """The tag of an image reference (`reg:5000/app:v1@sha256:..` -> `v1`), or None."""
    if not image:
        return None
    ref = image.split("@", 1)[0]
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return None  # `reg:5000/app` has a port, not a tag
    return tag


def image_digest(image: str | None) -> str | None:
    """The pinned digest of an image reference (`reg/app:v1@sha256:..` -> `sha256:..`),
    or None when it names a tag only."""
    if not image or "@" not in image:
        return None
    return image.rsplit("@", 1)[1] or None


@dataclass(frozen=True)
class LiveDeployment:
    """What one cluster runs now (`exists` False when the Deployment is absent)."""

    exists: bool
    version: str | None = None          # tag of the app's container image
    image: str | None = None
    revision: int | None = None
    generation: int = 0
    desired: int = 0
    ready: int = 0
    updated: int = 0
    available: int = 0
    release_id: str | None = None       # annotation: the last release/rollback that set it
    previous_version: str | None = None  # annotation: what that release replaced
    annotations: Mapping[str, str] = field(default_factory=dict)
    template: Mapping[str, Any] | None = None   # the pod template (for rollback)
    selector: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""
    resource_version: str = ""           # of the Deployment as read (an apply's precondition)
    # Set by the Helm driver: the release's current revision and its chart.
    helm_revision: int | None = None
    chart_version: str | None = None
    app_version: str | None = None
    helm_status: str | None = None

    @property
    def digest(self) -> str | None:
        """The digest the app's image is pinned to (None: a tag only, or absent)."""
        return image_digest(self.image)

    @property
    def helm_pending(self) -> bool:
        """Helm left the release pending (a helm killed mid-operation): it refuses every
        other operation but a rollback, even to the version that runs."""
        return (self.helm_status or "").startswith("pending-")

    @property
    def history_revision(self) -> int | None:
        """The revision `revisions()` numbers are compared with: Helm's, else the Deployment's."""
        return self.helm_revision if self.helm_revision is not None else self.revision


@dataclass(frozen=True)
class Revision:
    """One entry of the rollout history (a ReplicaSet owned by the Deployment)."""

    number: int
    version: str | None
    image: str | None
    replicas: int
    created: str
    template: Mapping[str, Any]


@dataclass(frozen=True)
class Progress:
    """A change in a rollout worth telling the operator."""

    phase: str
    message: str
    desired: int
    updated: int
    ready: int
    available: int
    problem: str | None = None


def _container_image(template: Mapping[str, Any] | None, app: str) -> str | None:
    """The image of the container named `app` (else the first container)."""
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == app:
            return container.get("image")
    return containers[0].get("image") if containers else None


def _template_images(template: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(c.get("image", "") for c in (template.get("spec") or {}).get("containers") or ())


def selector_string(match_labels: Mapping[str, str]) -> str:
    """`matchLabels` as a label selector query value."""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
