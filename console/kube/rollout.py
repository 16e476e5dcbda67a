"""The rules that say whether a Deployment rollout is done, as pure functions.

`rollout_status` is `kubectl rollout status` (kubectl
`pkg/polymorphichelpers/rollout_status.go`) with one change that matters for a fleet:
it is pinned to the generation our own apply produced. A Deployment whose
`status.observedGeneration` has not reached that generation is still showing the
*previous* rollout's status - possibly "complete" - and must not be taken as done
(the bug Argo CD's progressive syncs keep hitting).

`pod_problems` and `FailFast` classify pods so that a rollout whose new pods cannot
pull their image, crash-loop or cannot start fails within a short grace instead of
waiting for the progress deadline (600 s by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


class Phase(str, Enum):
    """Where a rollout stands."""

    OBSERVING = "observing"      # the controller has not yet seen our generation
    PROGRESSING = "progressing"  # one of kubectl's "Waiting for ..." states
    COMPLETE = "complete"        # kubectl's "successfully rolled out"
    FAILED = "failed"            # the progress deadline passed


@dataclass(frozen=True)
class RolloutStatus:
    """One reading of a Deployment against the generation we wait for."""

    phase: Phase
    message: str
    desired: int
    updated: int
    ready: int
    available: int
    total: int

    @property
    def done(self) -> bool:
        """True once the rollout is complete or has failed."""
        return self.phase in (Phase.COMPLETE, Phase.FAILED)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) else 0


def rollout_status(deployment: Mapping[str, Any], generation: int | None = None) -> RolloutStatus:
    """Apply kubectl's rollout-status rules to `deployment` (a JSON dict).

    `generation` is the `metadata.generation` our apply produced; until both the object
    and its status have reached it, the rollout is `OBSERVING`, whatever the status
    says. Without it the rules are exactly kubectl's (pinned to the object's own
    generation).
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "")
    own_generation = _int(meta.get("generation"))
    observed = _int(status.get("observedGeneration"))
    replicas = spec.get("replicas")
    desired = replicas if isinstance(replicas, int) else 1
    updated = _int(status.get("updatedReplicas"))
    available = _int(status.get("availableReplicas"))
    counts = dict(desired=desired, updated=updated, ready=_int(status.get("readyReplicas")),
                  available=available, total=_int(status.get("replicas")))
    wanted = max(own_generation, generation or 0)
    if observed < wanted:
        return RolloutStatus(Phase.OBSERVING,
                             "Waiting for deployment spec update to be observed...", **counts)
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and \
                condition.get("reason") == "ProgressDeadlineExceeded":
            return RolloutStatus(Phase.FAILED,
                                 f'deployment "{name}" exceeded its progress deadline', **counts)
    # kubectl skips this rule when spec.replicas is unset.
    if isinstance(replicas, int) and updated < replicas:
        return RolloutStatus(
            Phase.PROGRESSING,
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of '
            f"{replicas} new replicas have been updated...", **counts)
    if counts["total"] > updated:
        return RolloutStatus(
            Phase.PROGRESSING,
            f'Waiting for deployment "{name}" rollout to finish: {counts["total"] - updated} '
            "old replicas are pending termination...", **counts)
    if available < updated:
        return RolloutStatus(
            Phase.PROGRESSING,
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
            "updated replicas are available...", **counts)
    return RolloutStatus(Phase.COMPLETE, f'deployment "{name}" successfully rolled out', **counts)


# Container waiting reasons that will not go away by waiting: the image cannot be
# pulled, the container cannot be created from its spec, or it keeps crashing.
FATAL_WAITING_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "ImageInspectError", "RegistryUnavailable", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
    "PreStartHookError", "PostStartHookError",
})
# Terminated reasons that mean the container died on its own (a restart will follow).
CRASH_TERMINATED_REASONS = frozenset({"Error", "OOMKilled", "ContainerCannotRun",
                                      "StartError"})


@dataclass(frozen=True)
class PodProblem:
    """Why one container of one pod is not coming up."""

    pod: str
    container: str
    reason: str
    message: str
    restarts: int
    fatal: bool     # waiting longer will not help

    def describe(self) -> str:
        """One line for an error or an event: `pod/container: Reason (message)`."""
        detail = f" ({self.message})" if self.message else ""
        restarts = f", {self.restarts} restarts" if self.restarts else ""
        return f"{self.pod}/{self.container}: {self.reason}{detail}{restarts}"


def pod_images(pod: Mapping[str, Any]) -> tuple[str, ...]:
    """The images of a pod's (regular) containers, in order."""
    containers = (pod.get("spec") or {}).get("containers") or ()
    return tuple(c.get("image", "") for c in containers)


def pod_problems(pod: Mapping[str, Any]) -> list[PodProblem]:
    """Every container of `pod` that is stuck, crashing or cannot start.

    A pod being deleted is never a problem (it is on its way out). An unschedulable
    pod is reported but not fatal: a cluster autoscaler may still add a node.
    """
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return []
    name = meta.get("name", "")
    status = pod.get("status") or {}
    problems: list[PodProblem] = []
    if status.get("phase") == "Failed":
        problems.append(PodProblem(name, "", status.get("reason") or "Failed",
                                   status.get("message", ""), 0, True))
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            problems.append(PodProblem(name, "", "Unschedulable",
                                       condition.get("message", ""), 0, False))
    statuses = list(status.get("initContainerStatuses") or ()) + \
        list(status.get("containerStatuses") or ())
    for cs in statuses:
        state = cs.get("state") or {}
        restarts = _int(cs.get("restartCount"))
        waiting = state.get("waiting")
        terminated = state.get("terminated")
        if waiting and waiting.get("reason") in FATAL_WAITING_REASONS:
            problems.append(PodProblem(name, cs.get("name", ""), waiting["reason"],
                                       waiting.get("message", ""), restarts, True))
        elif terminated and terminated.get("reason") in CRASH_TERMINATED_REASONS \
                and restarts > 0:
            problems.append(PodProblem(name, cs.get("name", ""), "CrashLoopBackOff",
                                       f"last exit: {terminated.get('reason')} "
                                       f"code {terminated.get('exitCode')}", restarts, True))
    return problems


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Running, not being deleted, and its `Ready` condition True."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or ())


def pod_summary(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a pod `verify_pods` reads (name, deletion, images, phase, Ready):
    what a rollout keeps of each pod its watch shows - a thousand rollouts kept every
    pod whole (managed fields, volumes, every status) until they ended."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    kept_meta = {"name": meta.get("name", "")}
    if meta.get("deletionTimestamp"):
        kept_meta["deletionTimestamp"] = meta["deletionTimestamp"]
    return {"metadata": kept_meta,
            "spec": {"containers": [{"image": image} for image in pod_images(pod)]},
            "status": {"phase": status.get("phase"),
                       "conditions": [{"type": "Ready", "status": c.get("status")}
                                      for c in status.get("conditions") or ()
                                      if c.get("type") == "Ready"]}}


def verify_pods(pods: Iterable[Mapping[str, Any]], images: tuple[str, ...],
                desired: int) -> str | None:
    """Check the end state: at least `desired` pods running `images`, all Running and Ready.

    Returns None when the pods are fine, else a one-line reason.
    """
    current = [p for p in pods if pod_images(p) == images
               and not (p.get("metadata") or {}).get("deletionTimestamp")]
    not_ready = [p for p in current if not pod_ready(p)]
    if not_ready:
        names = ", ".join(sorted((p.get("metadata") or {}).get("name", "") for p in not_ready))
        return f"{len(not_ready)} pod(s) not Running and Ready: {names}"
    if len(current) < desired:
        return f"only {len(current)} of {desired} pods run {', '.join(images)}"
    return None


class FailFast:
    """Turns repeated pod readings into a verdict: fail once a fatal problem outlives the grace.

    Feed it every pod reading (`observe`) with the time; it remembers since when each
    (pod, container, reason) has been seen, forgets pods that recover or disappear,
    and `verdict(now)` returns the problem that has lasted longer than `grace` seconds.
    Only pods running the rollout's `images` count: old pods are not ours to judge.
    """

    def __init__(self, images: tuple[str, ...], grace: float) -> None:
        self.images = images
        self.grace = grace
        self._since: dict[str, tuple[float, PodProblem]] = {}

    def observe(self, pod: Mapping[str, Any], now: float, deleted: bool = False) -> None:
        """Record the latest state of one pod (`deleted` when it is gone)."""
        name = (pod.get("metadata") or {}).get("name", "")
        if deleted or pod_images(pod) != self.images:
            self._since.pop(name, None)
            return
        fatal = [p for p in pod_problems(pod) if p.fatal]
        if not fatal:
            self._since.pop(name, None)
            return
        first = fatal[0]
        previous = self._since.get(name)
        # Reasons alternate (ErrImagePull <-> ImagePullBackOff, Error <-> CrashLoopBackOff):
        # keep the first time this pod went bad, report its latest reason.
        self._since[name] = (previous[0] if previous else now, first)

    def verdict(self, now: float) -> PodProblem | None:
        """The problem that has lasted longer than the grace, if any."""
        for since, problem in self._since.values():
            if now - since >= self.grace:
                return problem
        return None

    def due(self) -> float | None:
        """When the oldest problem seen outlives the grace (None: no problem)."""
        if not self._since:
            return None
        return min(since for since, _problem in self._since.values()) + self.grace

    def pending(self) -> PodProblem | None:
        """A fatal problem seen but still within its grace (for progress messages)."""
        for _since, problem in self._since.values():
            return problem
        return None
